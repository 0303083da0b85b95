// ferry_get.js calls a Ferry server from Node.js: a health check, GetOnlineFeatures of a
// feature service for two entity rows, and a call that fails, whose google.rpc.ErrorInfo
// reason it reads from the status details. It prints one JSON object per line.
//
//   npm install    # in this folder: see package.json
//   node ferry_get.js --target 127.0.0.1:6570 --protos ../../protos
"use strict";

const path = require("node:path");
const { parseArgs } = require("node:util");
const grpc = require("@grpc/grpc-js");
const protoLoader = require("@grpc/proto-loader");
const protobuf = require("protobufjs");
const googleProtos = require("google-proto-files");

const { values: args } = parseArgs({
  options: {
    target: { type: "string", default: "127.0.0.1:6570" },
    protos: { type: "string", default: path.join(__dirname, "..", "..", "protos") },
    "feature-service": { type: "string", default: "fraud_v1" },
  },
});

// int64 values as JS numbers would lose digits past 2**53: longs as strings, as JSON does.
const loadOptions = {
  keepCase: true, // field names as in the .proto files
  longs: String,
  enums: String,
  defaults: true,
  oneofs: true, // column.values names the set field of the Column oneof
};
const serving = grpc.loadPackageDefinition(
  protoLoader.loadSync("ferry/api/serving/v1/serving.proto", {
    ...loadOptions,
    includeDirs: [args.protos],
  }),
).ferry.api.serving.v1;
const healthProto = path.join(
  path.dirname(require.resolve("grpc-health-check/package.json")),
  "proto",
  "health",
  "v1",
  "health.proto",
);
const health = grpc.loadPackageDefinition(protoLoader.loadSync(healthProto, loadOptions)).grpc
  .health.v1;

// google.rpc.Status and ErrorInfo, to read an error's reason from grpc-status-details-bin.
const rpcTypes = new protobuf.Root();
rpcTypes.resolvePath = (_origin, target) =>
  path.isAbsolute(target) ? target : path.join(googleProtos.getProtoPath(), "..", target);
rpcTypes.loadSync(["google/rpc/status.proto", "google/rpc/error_details.proto"]);
const Status = rpcTypes.lookupType("google.rpc.Status");
const ErrorInfo = rpcTypes.lookupType("google.rpc.ErrorInfo");

const deadline = () => new Date(Date.now() + 10_000);
const call = (client, method, request) =>
  new Promise((resolve, reject) =>
    client[method](request, { deadline: deadline() }, (err, reply) =>
      err ? reject(err) : resolve(reply),
    ),
  );
const emit = (line) => console.log(JSON.stringify(line));

function reasonOf(err) {
  const [details] = err.metadata.get("grpc-status-details-bin");
  if (!details) return "";
  for (const any of Status.decode(details).details) {
    if (any.type_url.endsWith("/google.rpc.ErrorInfo")) return ErrorInfo.decode(any.value).reason;
  }
  return "";
}

// The values of a Column, one per row (lists for list types).
function valuesOf(column) {
  const kind = column.values; // the set field of the oneof, e.g. "int64_values"
  const held = column[kind];
  if (kind === "timestamp_values") return held.micros;
  if (!("lengths" in held)) return held.values;
  const rows = [];
  let start = 0;
  for (const n of held.lengths) {
    rows.push(held.values.slice(start, start + n));
    start += n;
  }
  return rows;
}

async function main() {
  const credentials = grpc.credentials.createInsecure(); // createSsl(...) for TLS
  const checker = new health.Health(args.target, credentials);
  const reply = await call(checker, "check", { service: "ferry.api.serving.v1.ServingService" });
  emit({ kind: "health", status: reply.status });

  const client = new serving.ServingService(args.target, credentials);
  const request = {
    feature_service: args["feature-service"],
    entities: {
      user_id: { int64_values: { values: ["1", "2"] } },
      merchant_id: { string_values: { values: ["m0000001", "m0000002"] } },
    },
  };
  const response = await call(client, "GetOnlineFeatures", request);
  for (const feature of response.features) {
    emit({
      kind: "feature",
      name: feature.name,
      type: feature.type,
      statuses: feature.statuses,
      values: valuesOf(feature.values),
    });
  }

  try {
    await call(client, "GetOnlineFeatures", { ...request, feature_service: "no_such_service" });
  } catch (err) {
    emit({ kind: "error", code: grpc.status[err.code], reason: reasonOf(err) });
  }
  checker.close();
  client.close();
}

main().catch((err) => {
  console.error(`ferry_get: ${err.message}`);
  process.exit(1);
});
