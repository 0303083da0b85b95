// ferry_get calls a Ferry server from Go: a health check, GetOnlineFeatures of a feature
// service for two entity rows, and a call that fails, whose google.rpc.ErrorInfo reason it
// reads from the status details. It prints one JSON object per line.
//
// Build (code generated as docs/other-languages.md shows, GOPATH mode):
//
//	GOPATH=$WORK:/usr/share/gocode GO111MODULE=off go build -o ferry_get ./examples/go/ferry_get
//	./ferry_get -target 127.0.0.1:6570
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	servingv1 "ferry/gen/go/ferry/api/serving/v1"
	typesv1 "ferry/gen/go/ferry/api/types/v1"
)

func main() {
	target := flag.String("target", "127.0.0.1:6570", "HOST:PORT of a ferry server")
	service := flag.String("feature-service", "fraud_v1", "the feature service to ask for")
	flag.Parse()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// Plaintext on loopback; grpc.WithTransportCredentials for TLS.
	conn, err := grpc.DialContext(ctx, *target, grpc.WithInsecure(), grpc.WithBlock())
	if err != nil {
		fail("dial", err)
	}
	defer conn.Close()

	health, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{
		Service: "ferry.api.serving.v1.ServingService",
	})
	if err != nil {
		fail("health", err)
	}
	emit(map[string]any{"kind": "health", "status": health.GetStatus().String()})

	client := servingv1.NewServingServiceClient(conn)
	request := &servingv1.GetOnlineFeaturesRequest{
		Features: &servingv1.GetOnlineFeaturesRequest_FeatureService{FeatureService: *service},
		Entities: map[string]*typesv1.Column{
			"user_id": {Values: &typesv1.Column_Int64Values{
				Int64Values: &typesv1.Int64Values{Values: []int64{1, 2}},
			}},
			"merchant_id": {Values: &typesv1.Column_StringValues{
				StringValues: &typesv1.StringValues{Values: []string{"m0000001", "m0000002"}},
			}},
		},
	}
	response, err := client.GetOnlineFeatures(ctx, request)
	if err != nil {
		fail("GetOnlineFeatures", err)
	}
	for _, feature := range response.GetFeatures() {
		statuses := []string{}
		for _, s := range feature.GetStatuses() {
			statuses = append(statuses, s.String())
		}
		emit(map[string]any{
			"kind":     "feature",
			"name":     feature.GetName(),
			"type":     feature.GetType().String(),
			"statuses": statuses,
			"values":   values(feature.GetValues()),
		})
	}

	// A failure carries its reason in a google.rpc.ErrorInfo detail.
	request.Features = &servingv1.GetOnlineFeaturesRequest_FeatureService{FeatureService: "no_such_service"}
	_, err = client.GetOnlineFeatures(ctx, request)
	failure := status.Convert(err)
	reason := ""
	for _, detail := range failure.Details() {
		if info, ok := detail.(*errdetails.ErrorInfo); ok {
			reason = info.GetReason()
		}
	}
	emit(map[string]any{"kind": "error", "code": failure.Code().String(), "reason": reason})
}

// values returns a column's values as JSON-ready Go values (lists for list types).
func values(column *typesv1.Column) any {
	switch v := column.GetValues().(type) {
	case *typesv1.Column_Int64Values:
		return v.Int64Values.GetValues()
	case *typesv1.Column_Int32Values:
		return v.Int32Values.GetValues()
	case *typesv1.Column_DoubleValues:
		return v.DoubleValues.GetValues()
	case *typesv1.Column_FloatValues:
		return v.FloatValues.GetValues()
	case *typesv1.Column_BoolValues:
		return v.BoolValues.GetValues()
	case *typesv1.Column_StringValues:
		return v.StringValues.GetValues()
	case *typesv1.Column_TimestampValues:
		return v.TimestampValues.GetMicros()
	case *typesv1.Column_FloatListValues:
		return split(v.FloatListValues.GetValues(), v.FloatListValues.GetLengths())
	default:
		return fmt.Sprintf("%T", v)
	}
}

// split cuts the flat values of a list column into one list per row.
func split[T any](flat []T, lengths []uint32) [][]T {
	rows := make([][]T, 0, len(lengths))
	start := 0
	for _, n := range lengths {
		rows = append(rows, flat[start:start+int(n)])
		start += int(n)
	}
	return rows
}

func emit(line map[string]any) {
	text, err := json.Marshal(line)
	if err != nil {
		fail("json", err)
	}
	fmt.Println(string(text))
}

func fail(what string, err error) {
	fmt.Fprintf(os.Stderr, "ferry_get: %s: %v\n", what, err)
	os.Exit(1)
}
