package promsd_test

import (
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	_ "github.com/prometheus/prometheus/discovery/kubernetes"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/promshard/promshard/watch/promsd"
)

// kubeAPI stands in for a Kubernetes API server: it serves one
// namespace's pods on loopback with the real wire protocol (list, watch
// from a resource version, and the watch-list stream that client-go uses
// by default: initial events, then a bookmark).
type kubeAPI struct {
	t  *testing.T
	ns string

	mu      sync.Mutex
	rv      int
	pods    map[string]*corev1.Pod
	log     []watchEvent
	changed chan struct{} // closed and replaced on every change
}

type watchEvent struct {
	Type   string `json:"type"`
	Object any    `json:"object"`
	rv     int
}

func newKubeAPI(t *testing.T, ns string) (*kubeAPI, string) {
	k := &kubeAPI{t: t, ns: ns, pods: map[string]*corev1.Pod{}, changed: make(chan struct{}), rv: 100}
	srv := httptest.NewServer(k)
	t.Cleanup(func() {
		srv.CloseClientConnections()
		srv.Close()
	})
	return k, srv.URL
}

// apply adds or changes a pod (ADDED or MODIFIED), or deletes it (nil).
func (k *kubeAPI) apply(name string, p *corev1.Pod) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.rv++
	typ := "MODIFIED"
	if p == nil {
		p, typ = k.pods[name].DeepCopy(), "DELETED"
		delete(k.pods, name)
	} else if _, ok := k.pods[name]; !ok {
		typ = "ADDED"
	}
	p.ResourceVersion = strconv.Itoa(k.rv)
	if typ != "DELETED" {
		k.pods[name] = p
	}
	k.log = append(k.log, watchEvent{Type: typ, Object: p.DeepCopy(), rv: k.rv})
	close(k.changed)
	k.changed = make(chan struct{})
}

func (k *kubeAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/api/v1/namespaces/"+k.ns+"/pods" {
		http.Error(w, `{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"NotFound","code":404}`, http.StatusNotFound)
		return
	}
	q := r.URL.Query()
	k.t.Logf("%s %s", r.Method, r.URL.RequestURI())
	w.Header().Set("Content-Type", "application/json")
	if q.Get("watch") != "true" && q.Get("watch") != "1" {
		k.mu.Lock()
		list := corev1.PodList{TypeMeta: metav1.TypeMeta{Kind: "PodList", APIVersion: "v1"},
			ListMeta: metav1.ListMeta{ResourceVersion: strconv.Itoa(k.rv)}}
		for _, n := range slices.Sorted(maps.Keys(k.pods)) {
			list.Items = append(list.Items, *k.pods[n].DeepCopy())
		}
		k.mu.Unlock()
		json.NewEncoder(w).Encode(list)
		return
	}
	enc, flush := json.NewEncoder(w), w.(http.Flusher)
	from, _ := strconv.Atoi(q.Get("resourceVersion"))
	if q.Get("sendInitialEvents") == "true" {
		k.mu.Lock()
		from = k.rv
		var initial []watchEvent
		for _, n := range slices.Sorted(maps.Keys(k.pods)) {
			initial = append(initial, watchEvent{Type: "ADDED", Object: k.pods[n].DeepCopy()})
		}
		k.mu.Unlock()
		for _, e := range initial {
			enc.Encode(e)
		}
		enc.Encode(watchEvent{Type: "BOOKMARK", Object: &corev1.Pod{TypeMeta: metav1.TypeMeta{Kind: "Pod", APIVersion: "v1"},
			ObjectMeta: metav1.ObjectMeta{ResourceVersion: strconv.Itoa(from), Annotations: map[string]string{"k8s.io/initial-events-end": "true"}}}})
	}
	flush.Flush()
	timeout := time.Minute
	if s, err := strconv.Atoi(q.Get("timeoutSeconds")); err == nil && s > 0 {
		timeout = time.Duration(s) * time.Second
	}
	end := time.After(timeout)
	for {
		k.mu.Lock()
		var todo []watchEvent
		for _, e := range k.log {
			if e.rv > from {
				todo = append(todo, e)
			}
		}
		changed := k.changed
		k.mu.Unlock()
		for _, e := range todo {
			enc.Encode(e)
			from = e.rv
		}
		flush.Flush()
		select {
		case <-changed:
		case <-end:
			return
		case <-r.Context().Done():
			return
		}
	}
}

// pod is a collector pod: its readiness, phase, zone label and
// annotations, and whether it is terminating.
func pod(name string, ip int, ready bool, phase corev1.PodPhase, zone string, annotations map[string]string, terminating bool) *corev1.Pod {
	status := corev1.ConditionFalse
	if ready {
		status = corev1.ConditionTrue
	}
	p := &corev1.Pod{
		TypeMeta: metav1.TypeMeta{Kind: "Pod", APIVersion: "v1"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "collectors", UID: types.UID("uid-" + name),
			Labels: map[string]string{"app": "prometheus", "zone": zone}, Annotations: annotations},
		Spec: corev1.PodSpec{NodeName: "node-1", Containers: []corev1.Container{{Name: "prometheus",
			Ports: []corev1.ContainerPort{{Name: "web", ContainerPort: 9090, Protocol: corev1.ProtocolTCP}}}}},
		Status: corev1.PodStatus{Phase: phase, PodIP: fmt.Sprintf("10.1.0.%d", ip), HostIP: "10.0.0.1",
			Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: status}}},
	}
	if terminating {
		now := metav1.Now()
		p.DeletionTimestamp = &now
	}
	return p
}

// Role pod against a stand-in API server: the member set follows pods
// that become not ready, terminate, are deleted, are added and are
// drained by an annotation; the relabelled ID, zone and weight are right.
func TestKubernetesPods(t *testing.T) {
	k, url := newKubeAPI(t, "collectors")
	running := corev1.PodRunning
	k.apply("prom-0", pod("prom-0", 10, true, running, "a", nil, false))
	k.apply("prom-1", pod("prom-1", 11, true, running, "b", map[string]string{"promshard.io/weight": "2"}, false))
	k.apply("prom-2", pod("prom-2", 12, true, running, "c", nil, false))
	k.apply("prom-9", pod("prom-9", 19, false, corev1.PodPending, "a", nil, false))
	wait := run(t, fmt.Sprintf("kubernetes_sd_configs: [{role: pod, api_server: %q, namespaces: {names: [collectors]}}]", url), `
- {source_labels: [__meta_kubernetes_pod_container_port_name], regex: web, action: keep}
- {source_labels: [__meta_kubernetes_pod_label_zone], target_label: zone}
- {source_labels: [__meta_kubernetes_pod_annotation_promshard_io_weight], target_label: __promshard_weight__}
- {source_labels: [__meta_kubernetes_pod_annotation_promshard_io_drain], target_label: __promshard_drain__}
`, promsd.Options{Settle: -1, UpdateInterval: 100 * time.Millisecond})
	ms := wait([]string{"prom-0", "prom-1", "prom-2"}, []string{"prom-9:critical"})
	if m := ms[1]; m.HostPort() != "10.1.0.11:9090" || m.Weight != 2 || m.Meta["zone"] != "b" {
		t.Fatalf("prom-1: at %s, weight %d, zone %q", m.HostPort(), m.Weight, m.Meta["zone"])
	}
	if ms[0].Weight != 0 || ms[0].Meta["zone"] != "a" {
		t.Fatalf("prom-0: weight %d, zone %q", ms[0].Weight, ms[0].Meta["zone"])
	}

	k.apply("prom-1", pod("prom-1", 11, false, running, "b", nil, false)) // not ready
	wait([]string{"prom-0", "prom-2"}, []string{"prom-1:critical", "prom-9:critical"})
	k.apply("prom-2", pod("prom-2", 12, false, running, "c", nil, true)) // terminating: leaves at once
	wait([]string{"prom-0"}, []string{"prom-1:critical", "prom-2:critical", "prom-9:critical"})
	k.apply("prom-2", nil) // deleted: gone
	k.apply("prom-9", nil)
	wait([]string{"prom-0"}, []string{"prom-1:critical"})
	k.apply("prom-3", pod("prom-3", 13, true, running, "c", nil, false))
	k.apply("prom-1", pod("prom-1", 11, true, running, "b", map[string]string{"promshard.io/drain": "true"}, false))
	ms = wait([]string{"prom-0", "prom-3"}, []string{"prom-1:maintenance"})
	if ms[1].Meta["zone"] != "c" {
		t.Fatalf("prom-3: zone %q", ms[1].Meta["zone"])
	}
}
