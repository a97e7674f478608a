package main

import (
	"context"
	"errors"
	"net"
	"net/http"
	"time"
)

// serveOn serves h on l until ctx ends, then shuts the server down, giving
// requests in flight up to 5 seconds. It returns nil after ctx ends, and
// the serve error otherwise.
func serveOn(ctx context.Context, l net.Listener, h http.Handler) error {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(l) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
		if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	}
}
