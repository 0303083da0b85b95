#!/usr/bin/env bash
# Installs, from Debian's packages, what generating and compiling Ferry's Go client needs:
# Go, protoc and its Go plugins, and the Go libraries (gRPC, protobuf, googleapis' rpc
# types) under /usr/share/gocode, used in GOPATH mode with no network.
set -euo pipefail
cd "$(dirname "$0")"
bash install-debian.sh \
  go=golang-go protoc=protobuf-compiler \
  protoc-gen-go=protoc-gen-go protoc-gen-go-grpc=protoc-gen-go-grpc \
  /usr/share/gocode/src/google.golang.org/grpc=golang-google-grpc-dev \
  /usr/share/gocode/src/google.golang.org/protobuf=golang-google-protobuf-dev \
  /usr/share/gocode/src/google.golang.org/genproto=golang-google-genproto-dev \
  /usr/share/gocode/src/github.com/golang/protobuf=golang-github-golang-protobuf-1-5-dev
