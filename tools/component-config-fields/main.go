// Command component-config-fields writes the fields of the kubelet's KubeletConfiguration and
// kube-proxy's KubeProxyConfiguration, read by reflection from their real Go types, as JSON:
// for each field its JSON name and kind, nested for objects, lists and maps. kubeha checks
// kubernetes.kubelet and kubernetes.kubeProxy against that file before any host is touched
// (components/config/model.py), so a mistyped or misspelt field fails at preview, naming the key.
//
// Usage (tools/component-config-fields.sh does this): go run . > components/component_config_fields.json
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"reflect"
	"strings"

	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	kubeproxy "k8s.io/kube-proxy/config/v1alpha1"
	kubelet "k8s.io/kubelet/config/v1beta1"
)

// Field is one JSON field's shape. Kind: boolean, integer, number, string, duration (a Go
// duration string, metav1.Duration), quantity (resource.Quantity), int-or-string, object
// (Fields), list (Items), map (string keys, Values), any (free-form JSON).
type Field struct {
	Kind   string            `json:"kind"`
	Fields map[string]*Field `json:"fields,omitempty"`
	Items  *Field            `json:"items,omitempty"`
	Values *Field            `json:"values,omitempty"`
}

var named = map[reflect.Type]string{
	reflect.TypeOf(metav1.Duration{}):    "duration",
	reflect.TypeOf(resource.Quantity{}):  "quantity",
	reflect.TypeOf(intstr.IntOrString{}): "int-or-string",
	reflect.TypeOf(metav1.Time{}):        "string",
	reflect.TypeOf(json.RawMessage{}):    "any",
	reflect.TypeOf(map[string]any{}):     "any",
	reflect.TypeOf((*any)(nil)).Elem():   "any",
}

var unmarshaler = reflect.TypeOf((*json.Unmarshaler)(nil)).Elem()

// customKind: a struct that decodes its own JSON, wrapping one value of a named kind (component-
// base's TimeOrMetaDuration takes a duration string or an integer of nanoseconds; QuantityValue a
// quantity).
func customKind(t reflect.Type) string {
	if t.NumField() == 1 {
		if kind, ok := named[t.Field(0).Type]; ok {
			if kind == "duration" {
				return "duration-or-integer"
			}
			return kind
		}
	}
	return "any"
}

func shape(t reflect.Type) *Field {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if kind, ok := named[t]; ok {
		return &Field{Kind: kind}
	}
	if t.Kind() == reflect.Struct && reflect.PointerTo(t).Implements(unmarshaler) {
		return &Field{Kind: customKind(t)}
	}
	switch t.Kind() {
	case reflect.Bool:
		return &Field{Kind: "boolean"}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return &Field{Kind: "integer"}
	case reflect.Float32, reflect.Float64:
		return &Field{Kind: "number"}
	case reflect.String:
		return &Field{Kind: "string"}
	case reflect.Slice, reflect.Array:
		if t.Elem().Kind() == reflect.Uint8 {
			return &Field{Kind: "string"} // []byte: base64 in JSON
		}
		return &Field{Kind: "list", Items: shape(t.Elem())}
	case reflect.Map:
		return &Field{Kind: "map", Values: shape(t.Elem())}
	case reflect.Struct:
		field := &Field{Kind: "object", Fields: map[string]*Field{}}
		addFields(field.Fields, t)
		return field
	case reflect.Interface:
		return &Field{Kind: "any"}
	}
	panic(fmt.Sprintf("no JSON shape for %s", t))
}

func addFields(into map[string]*Field, t reflect.Type) {
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		tag := f.Tag.Get("json")
		name, options, _ := strings.Cut(tag, ",")
		if name == "-" {
			continue
		}
		if f.Type == reflect.TypeOf(metav1.TypeMeta{}) {
			continue // apiVersion and kind: kubeha writes them
		}
		embedded := f.Type
		for embedded.Kind() == reflect.Pointer {
			embedded = embedded.Elem()
		}
		_, special := named[embedded]
		if f.Anonymous && embedded.Kind() == reflect.Struct && !special &&
			(name == "" || strings.Contains(options, "inline")) {
			addFields(into, embedded)
			continue
		}
		if name == "" {
			name = f.Name
		}
		into[name] = shape(f.Type)
	}
}

func main() {
	out := map[string]*Field{
		"kubelet.config.k8s.io/v1beta1/KubeletConfiguration":      shape(reflect.TypeOf(kubelet.KubeletConfiguration{})),
		"kubeproxy.config.k8s.io/v1alpha1/KubeProxyConfiguration": shape(reflect.TypeOf(kubeproxy.KubeProxyConfiguration{})),
	}
	encoder := json.NewEncoder(os.Stdout)
	encoder.SetIndent("", " ")
	if err := encoder.Encode(out); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
