#!/usr/bin/env bash
# Installs, from Debian's packages, what the tests of Ferry's Go and Java clients need to
# generate, compile and run them with no network: Go, protoc and its Go and Java plugins, a
# JDK, and the Go (GOPATH mode, /usr/share/gocode) and Java (/usr/share/java) libraries of
# gRPC, protobuf and googleapis' rpc types. Node.js comes with the machine; its packages
# from the npm registry.
set -euo pipefail
cd "$(dirname "$0")"
gocode=/usr/share/gocode/src
java=/usr/share/java
bash install-debian.sh \
  go=golang-go protoc=protobuf-compiler \
  protoc-gen-go=protoc-gen-go protoc-gen-go-grpc=protoc-gen-go-grpc \
  "$gocode/google.golang.org/grpc=golang-google-grpc-dev" \
  "$gocode/google.golang.org/protobuf=golang-google-protobuf-dev" \
  "$gocode/google.golang.org/genproto=golang-google-genproto-dev" \
  "$gocode/github.com/golang/protobuf=golang-github-golang-protobuf-1-5-dev" \
  javac=default-jdk-headless grpc_java_plugin=protobuf-compiler-grpc-java-plugin \
  "$java/grpc-netty.jar=libgrpc-java" "$java/protobuf.jar=libprotobuf-java" \
  "$java/netty-codec-http2.jar=libnetty-java" "$java/perfmark-api.jar=libperfmark-java" \
  "$java/geronimo-annotation-1.3-spec.jar=libgeronimo-annotation-1.3-spec-java"
