package watch_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/promshard/promshard/watch"
)

// A static member source without Consul: the collectors are listed, and
// every change of the healthy set arrives on the channel.
func ExampleNewStaticWatcher() {
	src, err := watch.NewStaticWatcher(watch.StaticOptions{Members: []watch.Member{
		{Address: "10.0.0.2", Port: 9090},
		{Address: "10.0.0.1", Port: 9090, Weight: 2},
	}})
	if err != nil {
		log.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	members := make(chan []watch.Member)
	go src.Run(ctx, members)
	for _, m := range <-members {
		fmt.Println(m.ID, m.Weight)
	}
	// Output:
	// 10.0.0.1:9090 2
	// 10.0.0.2:9090 0
}

// Register a collector in Consul with an HTTP check on Prometheus'
// /-/healthy, then follow the healthy collectors with blocking queries.
func ExampleNewConsulWatcher() {
	ctx := context.Background()
	client, err := watch.NewConsulClient(nil, 0) // CONSUL_HTTP_ADDR, CONSUL_HTTP_TOKEN, …
	if err != nil {
		log.Fatal(err)
	}
	err = watch.Register(ctx, client.Agent(), watch.Registration{
		Service: "prometheus-collector",
		ID:      "collector-a",
		Address: "10.0.0.1",
		Port:    9090,
		Check:   watch.Check{Interval: time.Second, DeregisterCriticalAfter: time.Hour},
	})
	if err != nil {
		log.Fatal(err)
	}
	w, err := watch.NewConsulWatcher(client.Health(), watch.ConsulOptions{
		Service: "prometheus-collector",
		Settle:  10 * time.Second, // a returning collector must pass 10 s before it gets targets
	})
	if err != nil {
		log.Fatal(err)
	}
	members := make(chan []watch.Member)
	go w.Run(ctx, members)
	for ms := range members {
		fmt.Println(len(ms), "healthy collectors")
	}
}
