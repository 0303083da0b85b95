#!/usr/bin/env bash
# Prints the class path of Debian's gRPC, protobuf and Netty jars (/usr/share/java) that
# FerryGet.java and the generated code compile and run against. With Maven or Gradle use
# io.grpc:grpc-netty-shaded, grpc-protobuf and grpc-stub instead, and
# com.google.api.grpc:proto-google-common-protos for google.rpc.ErrorInfo.
set -euo pipefail
jars=(
  grpc-api grpc-core grpc-netty grpc-protobuf grpc-protobuf-lite grpc-stub grpc-context
  protobuf guava perfmark-api error_prone_annotations geronimo-annotation-1.3-spec
  netty-buffer netty-codec netty-codec-http netty-codec-http2 netty-codec-socks netty-common
  netty-handler netty-handler-proxy netty-resolver netty-transport
  netty-transport-native-unix-common
)
path=""
for jar in "${jars[@]}"; do
  file="/usr/share/java/$jar.jar"
  [ -e "$file" ] || { echo "missing $file: bash scripts/install-client-toolchains.sh" >&2; exit 1; }
  path+="${path:+:}$file"
done
echo "$path"
