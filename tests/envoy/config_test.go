package envoy

import (
	"os"
	"path/filepath"
	"testing"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"sigs.k8s.io/yaml"
)

// The shipped example is a valid Envoy bootstrap: it reads into Envoy's own Bootstrap message
// (unknown fields and typed configs refused) and passes the protos' validation rules.
func TestTheExampleEnvoyConfigurationIsAValidBootstrap(t *testing.T) {
	text, err := os.ReadFile(filepath.Join(root, "examples", "envoy", "envoy.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	json, err := yaml.YAMLToJSON(text)
	if err != nil {
		t.Fatal(err)
	}
	var bootstrap bootstrapv3.Bootstrap
	if err := protojson.Unmarshal(json, &bootstrap); err != nil {
		t.Fatalf("not an Envoy bootstrap: %v", err)
	}
	if err := bootstrap.ValidateAll(); err != nil {
		t.Fatalf("invalid: %v", err)
	}
	clusters := bootstrap.GetStaticResources().GetClusters()
	if len(clusters) != 2 || clusters[0].GetName() != "arbiter" {
		t.Fatalf("clusters: %v", clusters)
	}
	address := clusters[0].GetLoadAssignment().GetEndpoints()[0].GetLbEndpoints()[0].GetEndpoint().GetAddress().GetSocketAddress()
	if address.GetPortValue() != 9191 {
		t.Errorf("arbiter's gRPC port in the example is %d, not the server's default 9191", address.GetPortValue())
	}
}
