// Command stages prints KWOK's default node and pod stages (those kwokctl gives a
// cluster) as one multi-document YAML file for `kwok --config`.
package main

import (
	"fmt"
	"strings"

	nodefast "sigs.k8s.io/kwok/kustomize/stage/node/fast"
	nodeheartbeat "sigs.k8s.io/kwok/kustomize/stage/node/heartbeat"
	podfast "sigs.k8s.io/kwok/kustomize/stage/pod/fast"
)

func main() {
	docs := []string{nodefast.DefaultNodeInit, nodeheartbeat.DefaultNodeHeartbeat,
		podfast.DefaultPodReady, podfast.DefaultPodComplete, podfast.DefaultPodDelete}
	for i, doc := range docs {
		docs[i] = strings.TrimSpace(doc)
	}
	fmt.Println(strings.Join(docs, "\n---\n"))
}
