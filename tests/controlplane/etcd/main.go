// Command etcd is etcd's server (go.etcd.io/etcd/server/v3/etcdmain), for the test
// control plane's API server: a release that reports watch progress, which the API
// server's watch cache needs for consistent lists.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
