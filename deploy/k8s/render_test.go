// Package k8s_test renders the Kustomize manifests under deploy/k8s, decodes
// every object strictly, and checks that they agree with the code and with
// each other.
package k8s_test

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

// The kustomizations a user applies. The base is rendered too: it must stand
// on its own, since an operator may write their own overlay.
var kustomizations = []string{"base", "overlays/production"}

// objectMeta is the part of metadata the CRD structs below accept.
type objectMeta struct {
	Name        string            `json:"name"`
	Namespace   string            `json:"namespace,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

// scaledObject is KEDA's ScaledObject (keda.sh/v1alpha1), the fields we use.
type scaledObject struct {
	APIVersion string     `json:"apiVersion"`
	Kind       string     `json:"kind"`
	Metadata   objectMeta `json:"metadata"`
	Spec       struct {
		ScaleTargetRef struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
			Name       string `json:"name"`
		} `json:"scaleTargetRef"`
		PollingInterval *int32 `json:"pollingInterval,omitempty"`
		CooldownPeriod  *int32 `json:"cooldownPeriod,omitempty"`
		MinReplicaCount *int32 `json:"minReplicaCount,omitempty"`
		MaxReplicaCount *int32 `json:"maxReplicaCount,omitempty"`
		Fallback        *struct {
			FailureThreshold int32 `json:"failureThreshold"`
			Replicas         int32 `json:"replicas"`
		} `json:"fallback,omitempty"`
		Advanced *struct {
			HorizontalPodAutoscalerConfig *struct {
				Behavior *autoscalingv2.HorizontalPodAutoscalerBehavior `json:"behavior,omitempty"`
			} `json:"horizontalPodAutoscalerConfig,omitempty"`
		} `json:"advanced,omitempty"`
		Triggers []kedaTrigger `json:"triggers"`
	} `json:"spec"`
}

type kedaTrigger struct {
	Type              string            `json:"type"`
	Name              string            `json:"name,omitempty"`
	Metadata          map[string]string `json:"metadata"`
	AuthenticationRef *struct {
		Name string `json:"name"`
	} `json:"authenticationRef,omitempty"`
}

// triggerAuthentication is KEDA's TriggerAuthentication, secrets only.
type triggerAuthentication struct {
	APIVersion string     `json:"apiVersion"`
	Kind       string     `json:"kind"`
	Metadata   objectMeta `json:"metadata"`
	Spec       struct {
		SecretTargetRef []struct {
			Parameter string `json:"parameter"`
			Name      string `json:"name"`
			Key       string `json:"key"`
		} `json:"secretTargetRef"`
	} `json:"spec"`
}

// rabbitmqCluster is the cluster operator's RabbitmqCluster (rabbitmq.com/v1beta1).
type rabbitmqCluster struct {
	APIVersion string     `json:"apiVersion"`
	Kind       string     `json:"kind"`
	Metadata   objectMeta `json:"metadata"`
	Spec       struct {
		Replicas  *int32                       `json:"replicas"`
		Image     string                       `json:"image,omitempty"`
		Resources *corev1.ResourceRequirements `json:"resources,omitempty"`
		RabbitMQ  *struct {
			AdditionalConfig  string   `json:"additionalConfig,omitempty"`
			AdditionalPlugins []string `json:"additionalPlugins,omitempty"`
		} `json:"rabbitmq,omitempty"`
		Persistence *struct {
			StorageClassName *string `json:"storageClassName,omitempty"`
			Storage          string  `json:"storage,omitempty"`
		} `json:"persistence,omitempty"`
		Affinity *corev1.Affinity `json:"affinity,omitempty"`
	} `json:"spec"`
}

// rabbitmqQueue is the messaging topology operator's Queue (rabbitmq.com/v1beta1).
type rabbitmqQueue struct {
	APIVersion string     `json:"apiVersion"`
	Kind       string     `json:"kind"`
	Metadata   objectMeta `json:"metadata"`
	Spec       struct {
		Name                     string         `json:"name"`
		Vhost                    string         `json:"vhost,omitempty"`
		Type                     string         `json:"type,omitempty"`
		Durable                  bool           `json:"durable"`
		AutoDelete               bool           `json:"autoDelete"`
		Arguments                map[string]any `json:"arguments,omitempty"`
		DeletionPolicy           string         `json:"deletionPolicy,omitempty"`
		RabbitmqClusterReference struct {
			Name string `json:"name"`
		} `json:"rabbitmqClusterReference"`
	} `json:"spec"`
}

// manifests is one rendered kustomization (or values file), decoded.
type manifests struct {
	dir             string
	deployments     map[string]*appsv1.Deployment
	services        map[string]*corev1.Service
	ingresses       map[string]*networkingv1.Ingress
	pdbs            map[string]*policyv1.PodDisruptionBudget
	jobs            map[string]*batchv1.Job
	configMaps      map[string]*corev1.ConfigMap
	secrets         map[string]*corev1.Secret
	namespaces      map[string]*corev1.Namespace
	scaledObjects   map[string]*scaledObject
	triggerAuths    map[string]*triggerAuthentication
	rabbitClusters  map[string]*rabbitmqCluster
	rabbitQueues    map[string]*rabbitmqQueue
	kinds           map[string]int    // kind → objects
	objNamespaces   map[string]string // kind/name → metadata.namespace
	objectsRendered int
}

// strictDecoder decodes built-in kinds and fails on any unknown or
// duplicate field.
var strictDecoder = serializer.NewCodecFactory(scheme.Scheme, serializer.EnableStrict).UniversalDeserializer()

// render builds a kustomization as `kubectl apply -k` would and decodes
// every object it yields.
func render(t *testing.T, dir string) *manifests {
	t.Helper()
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	res, err := k.Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		t.Fatalf("kustomize build %s: %v", dir, err)
	}
	m := newManifests(dir)
	for _, r := range res.Resources() {
		b, err := r.AsYAML()
		if err != nil {
			t.Fatalf("%s: %s as YAML: %v", dir, r.CurId(), err)
		}
		if err := m.add(b); err != nil {
			t.Fatalf("%s: %v", dir, err)
		}
	}
	return m
}

// decodeFile decodes a multi-document YAML file of objects (a values file
// applied with kubectl apply -f).
func decodeFile(t *testing.T, path string) *manifests {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	m := newManifests(path)
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(raw)))
	for {
		doc, err := r.Read()
		if err != nil {
			break
		}
		if len(bytes.TrimSpace(stripComments(doc))) == 0 {
			continue
		}
		if err := m.add(doc); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
	}
	if m.objectsRendered == 0 {
		t.Fatalf("%s: no objects", path)
	}
	return m
}

func newManifests(dir string) *manifests {
	return &manifests{
		dir:            dir,
		deployments:    map[string]*appsv1.Deployment{},
		services:       map[string]*corev1.Service{},
		ingresses:      map[string]*networkingv1.Ingress{},
		pdbs:           map[string]*policyv1.PodDisruptionBudget{},
		jobs:           map[string]*batchv1.Job{},
		configMaps:     map[string]*corev1.ConfigMap{},
		secrets:        map[string]*corev1.Secret{},
		namespaces:     map[string]*corev1.Namespace{},
		scaledObjects:  map[string]*scaledObject{},
		triggerAuths:   map[string]*triggerAuthentication{},
		rabbitClusters: map[string]*rabbitmqCluster{},
		rabbitQueues:   map[string]*rabbitmqQueue{},
		kinds:          map[string]int{},
		objNamespaces:  map[string]string{},
	}
}

// add decodes one object: built-in kinds through client-go's scheme,
// strictly; the CRDs strictly into the structs above. A kind that is
// neither fails, so nothing escapes the checks.
func (m *manifests) add(doc []byte) error {
	var head struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
		Metadata   struct {
			Name      string `json:"name"`
			Namespace string `json:"namespace"`
		} `json:"metadata"`
	}
	if err := yaml.Unmarshal(doc, &head); err != nil {
		return fmt.Errorf("read kind: %w", err)
	}
	id := head.Kind + "/" + head.Metadata.Name
	if _, dup := m.objNamespaces[id]; dup {
		return fmt.Errorf("%s twice", id)
	}
	m.objNamespaces[id] = head.Metadata.Namespace
	m.objectsRendered++
	m.kinds[head.Kind]++
	strictInto := func(v any) error {
		if err := yaml.UnmarshalStrict(doc, v); err != nil {
			return fmt.Errorf("%s: strict decode: %w", id, err)
		}
		return nil
	}
	switch head.APIVersion + " " + head.Kind {
	case "keda.sh/v1alpha1 ScaledObject":
		v := &scaledObject{}
		m.scaledObjects[head.Metadata.Name] = v
		return strictInto(v)
	case "keda.sh/v1alpha1 TriggerAuthentication":
		v := &triggerAuthentication{}
		m.triggerAuths[head.Metadata.Name] = v
		return strictInto(v)
	case "rabbitmq.com/v1beta1 RabbitmqCluster":
		v := &rabbitmqCluster{}
		m.rabbitClusters[head.Metadata.Name] = v
		return strictInto(v)
	case "rabbitmq.com/v1beta1 Queue":
		v := &rabbitmqQueue{}
		m.rabbitQueues[head.Metadata.Name] = v
		return strictInto(v)
	}
	obj, gvk, err := strictDecoder.Decode(doc, nil, nil)
	if runtime.IsNotRegisteredError(err) {
		return fmt.Errorf("%s: kind %s is neither built in nor one of the CRDs decoded here", id, head.APIVersion)
	}
	if err != nil {
		return fmt.Errorf("%s: strict decode: %w", id, err)
	}
	name := head.Metadata.Name
	switch o := obj.(type) {
	case *appsv1.Deployment:
		m.deployments[name] = o
	case *corev1.Service:
		m.services[name] = o
	case *networkingv1.Ingress:
		m.ingresses[name] = o
	case *policyv1.PodDisruptionBudget:
		m.pdbs[name] = o
	case *batchv1.Job:
		m.jobs[name] = o
	case *corev1.ConfigMap:
		m.configMaps[name] = o
	case *corev1.Secret:
		m.secrets[name] = o
	case *corev1.Namespace:
		m.namespaces[name] = o
	default:
		return fmt.Errorf("%s: kind %s has no checks here: add them", id, gvk)
	}
	return nil
}

// stripComments drops comment lines, to tell an empty document.
func stripComments(doc []byte) []byte {
	var out [][]byte
	for _, l := range bytes.Split(doc, []byte("\n")) {
		if !bytes.HasPrefix(bytes.TrimSpace(l), []byte("#")) {
			out = append(out, l)
		}
	}
	return bytes.Join(out, []byte("\n"))
}

// TestRender_decodes_every_object_strictly renders each kustomization and
// decodes every object; it fails on an unknown field or kind.
func TestRender_decodes_every_object_strictly(t *testing.T) {
	for _, dir := range kustomizations {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			m := render(t, dir)
			for _, kind := range []string{"Deployment", "Service", "Ingress", "PodDisruptionBudget", "Job",
				"ConfigMap", "Secret", "ScaledObject", "TriggerAuthentication"} {
				if m.kinds[kind] == 0 {
					t.Errorf("%s renders no %s", dir, kind)
				}
			}
		})
	}
}

// TestRender_production_puts_everything_in_its_namespace: a ScaledObject
// finds its Deployment, a TriggerAuthentication its Secret, and a pod its
// ConfigMap only within one namespace.
func TestRender_production_puts_everything_in_its_namespace(t *testing.T) {
	m := render(t, "overlays/production")
	ns := m.namespace(t)
	for id, got := range m.objNamespaces {
		if !strings.HasPrefix(id, "Namespace/") && got != ns {
			t.Errorf("%s is in namespace %q, want %q", id, got, ns)
		}
	}
	for id, got := range decodeFile(t, "values/rabbitmq.yaml").objNamespaces {
		if got != ns {
			t.Errorf("values/rabbitmq.yaml: %s is in namespace %q, want %q (the processes' and KEDA's)", id, got, ns)
		}
	}
}
