package elect_test

import (
	"context"
	"fmt"
	"log"

	"github.com/hashicorp/consul/api"

	"github.com/promshard/promshard/elect"
)

// A copy of a central-mode daemon campaigns with a ConsulLock and fences
// every write with Check; the constructor only validates, so building one
// needs no Consul.
func ExampleNewConsulLock() {
	client, err := api.NewClient(api.DefaultConfig())
	if err != nil {
		log.Fatal(err)
	}
	l, err := elect.NewConsulLock(client, elect.LockOptions{Key: "promshard/pool", Name: "copy-a"})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(l.Name(), l.Leading())
	write := func(ctx context.Context) error {
		if err := l.Check(ctx); err != nil {
			return err // not the leader (any more): write nothing
		}
		return nil // write the outputs here
	}
	_ = write
	_, err = elect.NewConsulLock(client, elect.LockOptions{Key: "/"})
	fmt.Println(err)
	// Output:
	// copy-a false
	// elect: LockOptions.Key is empty
}
