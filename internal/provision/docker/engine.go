package docker

import (
	"context"
	"time"

	"github.com/moby/moby/client"
)

// EngineAnswers reports whether a Docker engine answers a ping (from the
// environment's DOCKER_HOST or the default socket) within two seconds.
func EngineAnswers(ctx context.Context) bool {
	c, err := client.New(client.FromEnv)
	if err != nil {
		return false
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	_, err = c.Ping(ctx, client.PingOptions{})
	return err == nil
}
