// FerryGet calls a Ferry server from Java: GetOnlineFeatures of a feature service for two
// entity rows, and a call that fails, whose google.rpc.ErrorInfo reason it reads from the
// status details. It prints one JSON object per line. (Health checks: HealthGrpc of the
// io.grpc:grpc-services artifact, on service "ferry.api.serving.v1.ServingService".)
//
// Build and run (code generated as docs/other-languages.md shows):
//   javac -d classes -cp "$CLASSPATH" FerryGet.java GENERATED/**/*.java
//   java -cp "classes:$CLASSPATH" FerryGet 127.0.0.1:6570
import com.google.protobuf.Any;
import com.google.protobuf.InvalidProtocolBufferException;
import com.google.rpc.ErrorInfo;
import dev.ferry.api.serving.v1.GetOnlineFeaturesRequest;
import dev.ferry.api.serving.v1.GetOnlineFeaturesResponse;
import dev.ferry.api.serving.v1.ServingServiceGrpc;
import dev.ferry.api.types.v1.Column;
import dev.ferry.api.types.v1.FeatureColumn;
import dev.ferry.api.types.v1.Int64Values;
import dev.ferry.api.types.v1.StringValues;
import io.grpc.ManagedChannel;
import io.grpc.ManagedChannelBuilder;
import io.grpc.Metadata;
import io.grpc.StatusRuntimeException;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.stream.Collectors;

public final class FerryGet {
  private static final Metadata.Key<byte[]> STATUS_DETAILS =
      Metadata.Key.of("grpc-status-details-bin", Metadata.BINARY_BYTE_MARSHALLER);

  public static void main(String[] args) throws Exception {
    String target = args.length > 0 ? args[0] : "127.0.0.1:6570";
    // Plaintext on loopback; useTransportSecurity() for TLS.
    ManagedChannel channel = ManagedChannelBuilder.forTarget(target).usePlaintext().build();
    try {
      ServingServiceGrpc.ServingServiceBlockingStub serving =
          ServingServiceGrpc.newBlockingStub(channel).withDeadlineAfter(10, TimeUnit.SECONDS);
      GetOnlineFeaturesRequest request =
          GetOnlineFeaturesRequest.newBuilder()
              .setFeatureService("fraud_v1")
              .putEntities(
                  "user_id",
                  Column.newBuilder()
                      .setInt64Values(Int64Values.newBuilder().addValues(1).addValues(2))
                      .build())
              .putEntities(
                  "merchant_id",
                  Column.newBuilder()
                      .setStringValues(
                          StringValues.newBuilder().addValues("m0000001").addValues("m0000002"))
                      .build())
              .build();
      GetOnlineFeaturesResponse response = serving.getOnlineFeatures(request);
      for (FeatureColumn feature : response.getFeaturesList()) {
        String statuses =
            feature.getStatusesList().stream()
                .map(s -> quote(s.name()))
                .collect(Collectors.joining(", ", "[", "]"));
        System.out.println(
            "{\"kind\": \"feature\", \"name\": " + quote(feature.getName())
                + ", \"statuses\": " + statuses
                + ", \"values\": " + values(feature.getValues()) + "}");
      }

      try {
        serving.getOnlineFeatures(request.toBuilder().setFeatureService("no_such_service").build());
      } catch (StatusRuntimeException failure) {
        System.out.println(
            "{\"kind\": \"error\", \"code\": " + quote(failure.getStatus().getCode().name())
                + ", \"reason\": " + quote(reasonOf(failure)) + "}");
      }
    } finally {
      channel.shutdownNow().awaitTermination(5, TimeUnit.SECONDS);
    }
  }

  /** The ErrorInfo reason in a failure's google.rpc.Status details, "" if none. */
  private static String reasonOf(StatusRuntimeException failure)
      throws InvalidProtocolBufferException {
    Metadata trailers = failure.getTrailers();
    byte[] details = trailers == null ? null : trailers.get(STATUS_DETAILS);
    if (details == null) {
      return "";
    }
    for (Any detail : com.google.rpc.Status.parseFrom(details).getDetailsList()) {
      if (detail.is(ErrorInfo.class)) {
        return detail.unpack(ErrorInfo.class).getReason();
      }
    }
    return "";
  }

  /** A column's values as JSON: numbers, strings, or lists for list types. */
  private static String values(Column column) {
    List<String> out = new ArrayList<>();
    switch (column.getValuesCase()) {
      case INT64_VALUES -> column.getInt64Values().getValuesList().forEach(v -> out.add(v.toString()));
      case DOUBLE_VALUES ->
          column.getDoubleValues().getValuesList().forEach(v -> out.add(number(v)));
      case FLOAT_VALUES -> column.getFloatValues().getValuesList().forEach(v -> out.add(number(v)));
      case BOOL_VALUES -> column.getBoolValues().getValuesList().forEach(v -> out.add(v.toString()));
      case STRING_VALUES -> column.getStringValues().getValuesList().forEach(v -> out.add(quote(v)));
      case FLOAT_LIST_VALUES -> {
        List<Float> flat = column.getFloatListValues().getValuesList();
        int start = 0;
        for (int n : column.getFloatListValues().getLengthsList()) {
          out.add(
              flat.subList(start, start + n).stream()
                  .map(FerryGet::number)
                  .collect(Collectors.joining(", ", "[", "]")));
          start += n;
        }
      }
      default -> out.add(quote(column.getValuesCase().name()));
    }
    return String.join(", ", out).isEmpty() ? "[]" : "[" + String.join(", ", out) + "]";
  }

  private static String number(double value) {
    return Double.isFinite(value) ? Double.toString(value) : quote(Double.toString(value));
  }

  private static String number(float value) {
    return Float.isFinite(value) ? Float.toString(value) : quote(Float.toString(value));
  }

  private static String quote(String text) {
    return "\"" + text.replace("\\", "\\\\").replace("\"", "\\\"") + "\"";
  }
}
