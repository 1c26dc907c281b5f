// govmomi-sim starts govmomi's vCenter simulator (simulator.VPX) on 127.0.0.1 and
// prints its SDK URL (without credentials) as the first line of stdout; it runs
// until stdin closes or it gets SIGINT/SIGTERM. Any non-empty user name and
// password log in. Its guest operations need Docker in govmomi 0.24, so they fail
// with GuestOperationsUnavailable here: the controller must say so clearly.
//
// Build (Debian golang-go + golang-github-vmware-govmomi-dev, no module download):
//
//	GO111MODULE=off GOPATH=/usr/share/gocode go build -o govmomi-sim ./tests/go/govmomi-sim
package main

import (
	"crypto/tls"
	"fmt"
	"io"
	"log"
	"net/url"
	"os"
	"os/signal"
	"syscall"

	"github.com/vmware/govmomi/simulator"
)

func main() {
	model := simulator.VPX()
	defer model.Remove()
	if err := model.Create(); err != nil {
		log.Fatalf("creating the VPX model: %v", err)
	}
	model.Service.Listen = &url.URL{Host: "127.0.0.1:0"}
	model.Service.TLS = new(tls.Config) // HTTPS with the simulator's built-in test certificate
	server := model.Service.NewServer()
	defer server.Close()

	u := *server.URL
	u.User = nil
	fmt.Println(u.String())
	os.Stdout.Sync()

	done := make(chan struct{})
	go func() {
		io.Copy(io.Discard, os.Stdin)
		close(done)
	}()
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	select {
	case <-done:
	case <-sig:
	}
}
