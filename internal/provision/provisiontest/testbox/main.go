// Command testbox is the box that the provisioner tests run: a tiny static
// program whose behaviour is chosen by flags, so one binary (and one docker
// image) serves every test.
//
// It never prints an environment variable's value, only whether it is set
// and which names exist: tests plant secret values and check they do not
// leak anywhere, so the box itself must not be the leak.
package main

import (
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"
)

func main() {
	var (
		envNames    = flag.String("env", "", "comma-separated names: print `env NAME=set|unset` for each")
		envKeys     = flag.Bool("env-keys", false, "print `env-keys K1,K2,...`: the sorted names of the whole environment")
		ids         = flag.Bool("ids", false, "print `pid=N pgid=N`")
		user        = flag.Bool("user", false, "print `uid=N gid=N groups=G1,G2`")
		stdin       = flag.Bool("stdin", false, "read stdin to EOF and print `stdin bytes=N`")
		lines       = flag.Int("lines", 0, "print N lines `line I` on stdout")
		stderrLine  = flag.String("stderr", "", "print this line on stderr")
		get         = flag.String("get", "", "GET this URL and print `get status=N`")
		spawn       = flag.Bool("spawn", false, "start a copy of itself that ignores SIGTERM and print `child pid=N`")
		onTerm      = flag.String("on-term", "exit", "on SIGTERM: exit (print `got SIGTERM`, exit 0), ignore, or default")
		exitAfter   = flag.Duration("exit-after", -1, "exit after this long (negative: run until killed)")
		exitCode    = flag.Int("exit-code", 0, "exit code for -exit-after")
		readyMarker = flag.Bool("ready", true, "print `ready` once set up")
		leak        = flag.String("leak", "", "comma-separated names: print `leak NAME=value`, the one exception to never printing a value: for the tests that check it is masked on the way out")
	)
	flag.Parse()

	switch *onTerm {
	case "ignore":
		signal.Ignore(syscall.SIGTERM)
	case "exit":
		ch := make(chan os.Signal, 1)
		signal.Notify(ch, syscall.SIGTERM)
		go func() {
			<-ch
			fmt.Println("got SIGTERM")
			os.Exit(0)
		}()
	case "default":
	default:
		fmt.Fprintf(os.Stderr, "testbox: bad -on-term %q\n", *onTerm)
		os.Exit(2)
	}

	if *leak != "" {
		for name := range strings.SplitSeq(*leak, ",") {
			fmt.Printf("leak %s=%s\n", name, os.Getenv(name))
		}
	}
	if *envNames != "" {
		for name := range strings.SplitSeq(*envNames, ",") {
			state := "unset"
			if _, ok := os.LookupEnv(name); ok {
				state = "set"
			}
			fmt.Printf("env %s=%s\n", name, state)
		}
	}
	if *envKeys {
		var keys []string
		for _, kv := range os.Environ() {
			k, _, _ := strings.Cut(kv, "=")
			keys = append(keys, k)
		}
		slices.Sort(keys)
		fmt.Printf("env-keys %s\n", strings.Join(keys, ","))
	}
	if *ids {
		pgid, _ := syscall.Getpgid(0)
		fmt.Printf("pid=%d pgid=%d\n", os.Getpid(), pgid)
	}
	if *user {
		groups, _ := os.Getgroups()
		gs := make([]string, len(groups))
		for i, g := range groups {
			gs[i] = fmt.Sprint(g)
		}
		fmt.Printf("uid=%d gid=%d groups=%s\n", os.Getuid(), os.Getgid(), strings.Join(gs, ","))
	}
	if *stdin {
		n, _ := io.Copy(io.Discard, os.Stdin)
		fmt.Printf("stdin bytes=%d\n", n)
	}
	for i := range *lines {
		fmt.Printf("line %d\n", i)
	}
	if *stderrLine != "" {
		fmt.Fprintln(os.Stderr, *stderrLine)
	}
	if *get != "" {
		c := http.Client{Timeout: 5 * time.Second}
		resp, err := c.Get(*get)
		if err != nil {
			fmt.Printf("get error=%v\n", err)
		} else {
			resp.Body.Close()
			fmt.Printf("get status=%d\n", resp.StatusCode)
		}
	}
	if *spawn {
		self, err := os.Executable()
		if err == nil {
			// The child shares our stdout (the box's log) and process group,
			// and ignores SIGTERM: only a group-wide SIGKILL removes it.
			cmd := exec.Command(self, "-on-term=ignore", "-ready=false")
			cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
			err = cmd.Start()
			if err == nil {
				fmt.Printf("child pid=%d\n", cmd.Process.Pid)
			}
		}
		if err != nil {
			fmt.Printf("spawn error=%v\n", err)
		}
	}
	if *readyMarker {
		fmt.Println("ready")
	}

	if *exitAfter >= 0 {
		time.Sleep(*exitAfter)
		os.Exit(*exitCode)
	}
	// A sleeping loop rather than select{}: with no signal goroutine the
	// runtime would call a bare select{} a deadlock and crash.
	for {
		time.Sleep(time.Hour)
	}
}
