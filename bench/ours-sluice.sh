#!/usr/bin/env bash
# Runs sluice-proxy with a pushed config (POST /config on the admin socket; OURS_PUSH=0: read at
# start from KONG_DECLARATIVE_CONFIG instead): the `sluice` and `sluice-nometrics` targets of
# run.sh (also usable as OURS_CMD). SLUICE_METRICS=off turns the metrics off; OURS_CONFIG=file pushes
# that config instead of the one below. OURS_PLUGINS=cors,correlation-id puts those plugins (Kong's
# defaults, cors with an origin) on both routes: the `sluice-plugins` target of run.sh;
# OURS_PLUGINS=grpc-web puts grpc-web on the gRPC route only (it refuses plain HTTP): `sluice-grpcweb`.
# OURS_OTEL=<sampling rate> adds a global opentelemetry plugin exporting to OURS_OTEL_ENDPOINT (an
# OTLP/HTTP receiver): the `sluice-otel` (0.01) and `sluice-otel-full` (1) targets.
# OURS_PLUGINS=grpc-gateway adds the route bench.json (POST /v1/echo, JSON) on the gRPC service with
# grpc-gateway transcoding it to bench.Echo/Echo: the `sluice-json` target of run.sh.
# The consumer plugins (key-auth, acl, rate-limiting) go on the gRPC route only, with one consumer whose
# key is BENCH_APIKEY (metadata `apikey`): OURS_PLUGINS=key-auth is the `sluice-auth` target. With jwt
# the consumer's jwt_secrets holds BENCH_JWT_ALG's key from BENCH_JWT_KEY_FILE (tools/jwt_bench.py).
# Config (Kong declarative 3.0): /bench.Echo/ over h2c to the backend as gRPC, everything else over HTTP/1.1.
set -eu
: "${BACKEND_ADDR:?}" "${OURS_PORT:?}"
BIN=${SLUICE_PROXY:-$(dirname "$0")/../target/release/sluice-proxy}
DIR=$(mktemp -d -p "${OURS_TMP:-/tmp}" ours-sluice-XXXXXX)
HOST=${BACKEND_ADDR%:*} PORT=${BACKEND_ADDR##*:}
case ",${OURS_PLUGINS:-}," in *,grpc-gateway,*)
    JSON_ROUTE=$'  - name: bench.json\n    protocols: [http, https]\n    paths: [/v1/echo]\n' ;;
esac
if [ -n "${OURS_CONFIG:-}" ]; then cp "$OURS_CONFIG" "$DIR/kong.yaml"; else  # another config, e.g. the controller's (--dump)
cat >"$DIR/kong.yaml" <<CONF
_format_version: "3.0"
services:
- name: bench.grpc
  protocol: grpc
  host: $HOST
  port: $PORT
  routes:
  - name: bench.grpc
    protocols: [grpc, grpcs]
    paths: [/bench.Echo/]
${JSON_ROUTE:-}- name: bench.http
  protocol: http
  host: $HOST
  port: $PORT
  routes:
  - name: bench.http
    protocols: [http, https]
    paths: [/]
CONF
if [ -n "${OURS_PLUGINS:-}${OURS_OTEL:-}" ]; then
    echo "plugins:" >>"$DIR/kong.yaml"
fi
if [ -n "${OURS_OTEL:-}" ]; then
    printf -- '- name: opentelemetry\n  config: {traces_endpoint: "%s", sampling_rate: %s}\n' \
        "${OURS_OTEL_ENDPOINT:?}" "$OURS_OTEL" >>"$DIR/kong.yaml"
fi
if [ -n "${OURS_PLUGINS:-}" ]; then
    for p in ${OURS_PLUGINS//,/ }; do
        for r in bench.grpc bench.http; do
            [ "$p" = grpc-web ] && [ "$r" = bench.http ] && continue
            case $p in
                cors) printf -- '- name: cors\n  route: %s\n  config: {origins: ["https://app.example"]}\n' "$r" ;;
                grpc-gateway) [ "$r" = bench.grpc ] && printf -- '- name: grpc-gateway\n  route: bench.json\n  config: {proto_name: bench.proto, proto_text: "%s"}\n' \
                    'syntax = \"proto3\"; package bench; import \"google/api/annotations.proto\"; message Msg { bytes payload = 1; } service Echo { rpc Echo(Msg) returns (Msg) { option (google.api.http) = { post: \"/v1/echo\" body: \"*\" }; } }' ;;
                key-auth|basic-auth|jwt) [ "$r" = bench.grpc ] && printf -- '- name: %s\n  route: %s\n' "$p" "$r" ;;
                acl) [ "$r" = bench.grpc ] && printf -- '- name: acl\n  route: %s\n  config: {allow: [bench]}\n' "$r" ;;
                rate-limiting) [ "$r" = bench.grpc ] && printf -- '- name: rate-limiting\n  route: %s\n  config: {second: 1000000000, policy: local}\n' "$r" ;;
                *) printf -- '- name: %s\n  route: %s\n' "$p" "$r" ;;
            esac >>"$DIR/kong.yaml" || true
        done
    done
    case ",$OURS_PLUGINS," in *,key-auth,*|*,jwt,*)
        printf 'consumers:\n- username: bench\n  acls: [{group: bench}]\n' >>"$DIR/kong.yaml" ;;
    esac
    case ",$OURS_PLUGINS," in *,key-auth,*)
        printf '  keyauth_credentials: [{key: "%s"}]\n' "${BENCH_APIKEY:?}" >>"$DIR/kong.yaml" ;;
    esac
    case ",$OURS_PLUGINS," in *,jwt,*)  # the key jwt_bench.py wrote (a JSON string is a YAML scalar)
        field=rsa_public_key; [ "${BENCH_JWT_ALG:?}" = HS256 ] && field=secret
        printf '  jwt_secrets: [{key: bench-iss, algorithm: %s, %s: %s}]\n' "$BENCH_JWT_ALG" "$field" \
            "$(python3 -c 'import json, sys; print(json.dumps(open(sys.argv[1]).read()))' "${BENCH_JWT_KEY_FILE:?}")" \
            >>"$DIR/kong.yaml" ;;
    esac
fi
fi
LISTEN="127.0.0.1:$OURS_PORT http2"
[ -n "${OURS_TLS_PORT:-}" ] && LISTEN="$LISTEN, 127.0.0.1:$OURS_TLS_PORT http2 ssl"
export KONG_PROXY_LISTEN=$LISTEN SLUICE_ADMIN_SOCKET=$DIR/admin.sock
if [ "${OURS_PUSH:-1}" = 1 ]; then
    # The config is pushed like the controller pushes it: POST /config on the admin socket, from a
    # short-lived child that waits for the socket (this script becomes the proxy, so its PID is
    # the proxy's for CPU and RSS accounting).
    ( for _ in $(seq 200); do [ -S "$DIR/admin.sock" ] && break; sleep 0.05; done
      curl -sS --unix-socket "$DIR/admin.sock" -o "$DIR/push.out" -w 'config push: HTTP %{http_code}\n' \
          --data-binary @"$DIR/kong.yaml" http://localhost/config >&2 ) &
else
    export KONG_DECLARATIVE_CONFIG=$DIR/kong.yaml
fi
export KONG_STATUS_LISTEN=${OURS_STATUS_LISTEN:-127.0.0.1:18100} KONG_PROXY_ACCESS_LOG=${KONG_PROXY_ACCESS_LOG:-off}
export KONG_NGINX_WORKER_PROCESSES=${KONG_NGINX_WORKER_PROCESSES:-1}
[ -n "${TLS_CERT:-}" ] && export KONG_SSL_CERT=$TLS_CERT KONG_SSL_CERT_KEY=$TLS_KEY
exec ${SLUICE_WRAP:-} "$BIN"
