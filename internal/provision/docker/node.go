package docker

import (
	"context"
	"sync"
	"time"

	"github.com/moby/moby/client"
)

var _ interface{ Node() string } = (*Provisioner)(nil)

type engineNode struct {
	mu      sync.Mutex
	id      string
	lastTry time.Time
}

// Node names the Docker engine the boxes run on (its ID): containers
// belong to their engine, so a control plane that talks to another engine
// never declares this one's boxes dead. Until the engine has answered
// once, Node is "" and then asked again at most every 10 s.
func (p *Provisioner) Node() string {
	n := &p.node
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.id != "" || time.Since(n.lastTry) < 10*time.Second {
		return n.id
	}
	n.lastTry = time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	info, err := p.c.Info(ctx, client.InfoOptions{})
	if err != nil || info.Info.ID == "" {
		p.log.Warn("docker engine id (the node of docker boxes)", "err", err)
		return ""
	}
	n.id = "docker:" + info.Info.ID
	return n.id
}
