package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v2"
)

// The Kubernetes kit is valid YAML, every object names its kind, the
// prome-shard config in its ConfigMap passes check config, the collector's
// Prometheus config passes promtool, and the StatefulSet runs the sidecar
// in self mode on the files the collector reads.
func TestKubernetesManifests(t *testing.T) {
	b, err := os.ReadFile("deploy/kubernetes/prome-shard.yaml")
	if err != nil {
		t.Fatal(err)
	}
	objs := map[string]map[any]any{}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	for {
		var o map[any]any
		if err := dec.Decode(&o); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("not YAML: %v", err)
		}
		kind, _ := o["kind"].(string)
		name, _ := dig(o, "metadata", "name").(string)
		if kind == "" || name == "" || o["apiVersion"] == nil {
			t.Fatalf("an object without apiVersion, kind or name: %v", o)
		}
		objs[kind] = o
	}
	for _, k := range []string{"Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "ConfigMap", "Service", "StatefulSet"} {
		if objs[k] == nil {
			t.Fatalf("no %s", k)
		}
	}
	dir := t.TempDir()
	data := func(key string) string {
		v, _ := dig(objs["ConfigMap"], "data", key).(string)
		if v == "" {
			t.Fatalf("ConfigMap data %s is empty", key)
		}
		p := filepath.Join(dir, key)
		os.WriteFile(p, []byte(strings.ReplaceAll(v, "/shard", filepath.Join(dir, "shard"))), 0o644)
		return p
	}
	if code, stdout, stderr := runCmd("check", "config", "--config.file", data("prome-shard.yml")); code != exitOK || !strings.Contains(stdout, "kubernetes-pods") {
		t.Fatalf("check config: exit %d\n%s\n%s", code, stdout, stderr)
	}
	if out, err := exec.Command("promtool", "check", "config", data("prometheus.yml")).CombinedOutput(); err != nil {
		if _, missing := exec.LookPath("promtool"); missing != nil && os.Getenv("CI") != "true" {
			t.Logf("no promtool here: the collector's config is not checked")
		} else {
			t.Fatalf("promtool check config: %v\n%s", err, out)
		}
	}
	spec := dig(objs["StatefulSet"], "spec", "template", "spec").(map[any]any)
	containers := map[string]map[any]any{}
	for _, c := range spec["containers"].([]any) {
		c := c.(map[any]any)
		containers[c["name"].(string)] = c
	}
	sidecar := containers["prome-shard"]
	args := fmt.Sprint(sidecar["args"])
	if !strings.Contains(args, "--member=$(POD_NAME)") || !strings.Contains(args, "--config.file=/etc/prometheus/prome-shard.yml") {
		t.Fatalf("the sidecar's args %s: want self mode with the pod's name and the ConfigMap's config", args)
	}
	if env := fmt.Sprint(sidecar["env"]); !strings.Contains(env, "POD_NAME") || !strings.Contains(env, "metadata.name") {
		t.Fatalf("the sidecar's env %s: POD_NAME must come from metadata.name", env)
	}
	for _, name := range []string{"prometheus", "prome-shard"} {
		var mounts []string
		for _, m := range containers[name]["volumeMounts"].([]any) {
			mounts = append(mounts, m.(map[any]any)["mountPath"].(string))
		}
		if !slices.Contains(mounts, "/shard") || !slices.Contains(mounts, "/etc/prometheus") {
			t.Fatalf("%s mounts %v: want /shard and /etc/prometheus", name, mounts)
		}
	}
	if rules := fmt.Sprint(dig(objs["ClusterRole"], "rules")); !strings.Contains(rules, "pods") || !strings.Contains(rules, "watch") {
		t.Fatalf("the ClusterRole %s cannot watch pods", rules)
	}
	// The image the kit runs must have the Kubernetes SD, which the default
	// build leaves out.
	if b, err := os.ReadFile("deploy/Dockerfile"); err != nil || !strings.Contains(string(b), "ARG TAGS=promsd_kubernetes") || !strings.Contains(string(b), `-tags "${TAGS}"`) {
		t.Fatalf("deploy/Dockerfile must build with -tags promsd_kubernetes by default (%v)", err)
	}
}

// dig walks a decoded YAML object by keys.
func dig(o any, keys ...string) any {
	for _, k := range keys {
		m, ok := o.(map[any]any)
		if !ok {
			return nil
		}
		o = m[k]
	}
	return o
}
