#!/usr/bin/env bash
# TLS and mTLS against the real server, with certificates made here by Debian's openssl:
# a CA, a server certificate for localhost and 127.0.0.1 (SAN), a client certificate
# from that CA, and an unrelated second CA with its own client certificate.
#   TLS only: a client trusting the CA works, a plaintext client does not, /metrics
#   stays on loopback although gRPC listens on 0.0.0.0.
#   mTLS: a client without a certificate, with one from the wrong CA, or trusting the
#   wrong CA is refused; a valid client works (health, register, list; flags and
#   UPDP_TLS_* variables), as does the Python client.
#   mTLS + tokens (--auth_tokens): a valid certificate without a token is refused; a
#   reader lists but may not register or delete, an operator registers but may not
#   delete, an admin deletes (--token, --token_file, $UPDP_TOKEN, $UPDP_TOKEN_FILE; the
#   Python client's token=); each change leaves an audit line naming the caller; no
#   token appears in the server's log or on /metrics.
#   Start-up: a missing certificate, a key that does not match, a key without a
#   certificate, a bad tokens file, a limit out of range stop the server with a message
#   naming the flag.
# Usage: tls_cli.sh BUILD_DIR
set -euo pipefail
BUILD="$(cd "${1:?usage: tls_cli.sh BUILD_DIR}" && pwd)"
TAG=tls_cli
# shellcheck source=tests/cli/cli_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/cli_lib.sh"
command -v openssl >/dev/null || die "openssl is not installed (scripts/setup.sh)"
cd "$WORK"

# newkey NAME: an EC P-256 key and a CSR for CN=NAME.
newkey() {
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout "$1.key" \
    -out "$1.csr" -subj "/CN=$1" 2>/dev/null
}
# newca NAME: a self-signed CA.
newca() {
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout "$1.key" \
    -out "$1.pem" -days 2 -subj "/CN=$1" -addext basicConstraints=critical,CA:TRUE \
    -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null
}
# sign NAME CA EXTENSIONS: NAME.pem from NAME.csr, signed by CA.
sign() {
  printf '%s\n' "$3" >"$1.ext"
  openssl x509 -req -in "$1.csr" -CA "$2.pem" -CAkey "$2.key" -CAcreateserial -out "$1.pem" \
    -days 2 -extfile "$1.ext" 2>/dev/null
}
newca ca
newca other-ca
newkey server
sign server ca "subjectAltName=DNS:localhost,IP:127.0.0.1
extendedKeyUsage=serverAuth"
newkey client
sign client ca "extendedKeyUsage=clientAuth"
newkey intruder
sign intruder other-ca "extendedKeyUsage=clientAuth"
openssl verify -CAfile ca.pem server.pem client.pem >/dev/null || die "certificates"

# A tiny dataset that brings its own embeddings: 4 rows of dimension 2, float32.
python3 - <<'PY'
import struct
header = "{'descr': '<f4', 'fortran_order': False, 'shape': (4, 2), }"
header += " " * (63 - (10 + len(header)) % 64) + "\n"
with open("emb.npy", "wb") as f:
    f.write(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode())
    f.write(struct.pack("<8f", 1, 0, 0, 1, 1, 1, -1, 0))
PY

stop_server() {
  kill "$SERVER"
  wait "$SERVER" || true
  SERVER=""
}
# refused WHAT FLAG...: `updpctl health` with these flags must fail.
refused() {
  local what=$1
  shift
  if timeout 60 "$BUILD/updpctl" --addr "127.0.0.1:$PORT" "$@" health --timeout 3 >out 2>&1; then
    die "$what: accepted: $(cat out)"
  fi
}

# --- TLS only, gRPC on every interface, metrics on their default address.
MPORT=$(free_port)
CTL_FLAGS=(--tls_ca ca.pem)
start_server --host 0.0.0.0 --tls_cert server.pem --tls_key server.key --metrics_port "$MPORT"
ctl health | grep -q SERVING || die "TLS health"
ctl dataset list >/dev/null 2>list.err || die "TLS dataset list: $(cat list.err)"
grep -q "(TLS)" server.log || die "the log does not say TLS: $(cat server.log)"
grep -q "metrics on http://127.0.0.1:$MPORT/metrics" server.log ||
  die "metrics not on loopback by default under TLS: $(cat server.log)"
curl -fsS -o metrics.txt "http://127.0.0.1:$MPORT/metrics" || die "/metrics on 127.0.0.1"
grep -q '^# TYPE' metrics.txt || die "/metrics: $(head -3 metrics.txt)"
refused "plaintext client" --tls_ca ""
refused "client without the CA (system roots)" --tls
refused "client trusting the wrong CA" --tls_ca other-ca.pem
stop_server

# --- mTLS.
CTL_FLAGS=(--tls_ca ca.pem --tls_cert client.pem --tls_key client.key)
start_server --tls_cert server.pem --tls_key server.key --tls_client_ca ca.pem
grep -q "mTLS" server.log || die "the log does not say mTLS: $(cat server.log)"
refused "plaintext client under mTLS"
refused "TLS client without a certificate under mTLS" --tls_ca ca.pem
refused "client certificate from the wrong CA" --tls_ca ca.pem --tls_cert intruder.pem \
  --tls_key intruder.key
refused "client trusting the wrong CA" --tls_ca other-ca.pem --tls_cert client.pem \
  --tls_key client.key
ctl health | grep -q SERVING || die "mTLS health"
ctl dataset register vecs --embeddings "$WORK/emb.npy" >reg.out 2>&1 || die "register: $(cat reg.out)"
ctl dataset list >list.out 2>&1 || die "dataset list: $(cat list.out)"
grep -q '^vecs ' list.out || die "dataset list: $(cat list.out)"
# The same from the environment; a flag wins over its variable.
UPDP_TLS_CA=$WORK/ca.pem UPDP_TLS_CERT=$WORK/client.pem UPDP_TLS_KEY=$WORK/client.key \
  timeout 60 "$BUILD/updpctl" --addr "127.0.0.1:$PORT" dataset show vecs >show.out 2>&1 ||
  die "UPDP_TLS_* variables: $(cat show.out)"
grep -q "items: 4" show.out || die "dataset show: $(cat show.out)"
UPDP_TLS_CA=$WORK/other-ca.pem timeout 60 "$BUILD/updpctl" --addr "127.0.0.1:$PORT" \
  --tls_ca ca.pem --tls_cert client.pem --tls_key client.key health >/dev/null 2>&1 ||
  die "--tls_ca does not win over UPDP_TLS_CA"
# A certificate without its key is an error of the client, before any connection.
if timeout 60 "$BUILD/updpctl" --addr "127.0.0.1:$PORT" --tls_cert client.pem health >out 2>&1; then
  die "--tls_cert without --tls_key accepted"
fi
grep -q -- "--tls_cert needs --tls_key" out || die "cert without key: $(cat out)"
# The Python client (installed as run.sh does), when Debian's grpcio is there.
if /usr/bin/python3 -c "import grpc" 2>/dev/null; then
  cmake --install "$BUILD" --component python --prefix "$WORK/prefix" >/dev/null ||
    die "cmake --install --component python"
  PYTHONPATH="$WORK/prefix/lib/python3/dist-packages" /usr/bin/python3 - "127.0.0.1:$PORT" <<'PY' ||
import sys
import updp
tls = {"ca": "ca.pem", "cert": "client.pem", "key": "client.key"}
with updp.Client(sys.argv[1], tls=tls, timeout=20) as c:
    names = [d.name for d in c.datasets()]
    assert "vecs" in names, names
with updp.Client(sys.argv[1], tls={"ca": "ca.pem"}, timeout=5) as c:
    try:
        c.datasets()
        raise SystemExit("python: a client without a certificate was accepted")
    except updp.Error:
        pass
PY
    die "python client under mTLS"
fi
stop_server

# --- mTLS and tokens with roles.
READER=reader-tok-7f3a9c1e5b2d4680
OPERATOR=operator-tok-c0ffee1234567890
ADMIN=admin-tok-0a1b2c3d4e5f6789
cat >tokens.txt <<TOKENS
# token role name
$READER reader dashboards
$OPERATOR operator pipeline
$ADMIN admin alice
TOKENS
chmod 600 tokens.txt
printf '%s\n' "$OPERATOR" >operator.token
MPORT=$(free_port)
start_server --tls_cert server.pem --tls_key server.key --tls_client_ca ca.pem \
  --auth_tokens tokens.txt --metrics_port "$MPORT"
grep -q "token authentication on: 3 tokens" server.log || die "tokens: $(cat server.log)"
ctl health | grep -q SERVING || die "health needs no token"
# expect_refused CODE WHAT updpctl-args...: the call fails with CODE in its message.
expect_refused() {
  local code=$1 what=$2
  shift 2
  if ctl "$@" >out 2>&1; then die "$what: accepted: $(cat out)"; fi
  grep -q "$code" out || die "$what: no $code in: $(cat out)"
}
expect_refused UNAUTHENTICATED "no token" dataset list
expect_refused UNAUTHENTICATED "unknown token" --token not-a-token-0123456789 dataset list
UPDP_TOKEN=$READER ctl dataset list >/dev/null 2>out || die "reader list: $(cat out)"
UPDP_TOKEN=$READER expect_refused PERMISSION_DENIED "reader registers" \
  dataset register vecs2 --embeddings "$WORK/emb.npy"
ctl --token_file operator.token dataset register vecs2 --embeddings "$WORK/emb.npy" >out 2>&1 ||
  die "operator register: $(cat out)"
expect_refused PERMISSION_DENIED "operator deletes" --token_file operator.token dataset delete vecs2
grep -q "needs the admin role" out || die "the refusal does not name the role: $(cat out)"
UPDP_TOKEN=$READER expect_refused PERMISSION_DENIED "reader deletes" dataset delete vecs2
UPDP_TOKEN=$READER ctl dataset show vecs2 >out 2>&1 || die "a refused delete removed vecs2"
UPDP_TOKEN_FILE=$WORK/operator.token ctl dataset list >/dev/null 2>out ||
  die "UPDP_TOKEN_FILE: $(cat out)"
ctl --token "$ADMIN" dataset delete vecs2 >out 2>&1 || die "admin delete: $(cat out)"
# The audit trail (standard error by default): caller, method, target, outcome.
grep '"audit":"updp"' server.log >audit.txt || die "no audit lines: $(cat server.log)"
grep '"caller":"pipeline"' audit.txt | grep '"method":"RegisterDataset"' |
  grep '"target":"vecs2"' | grep -q '"outcome":"OK"' || die "register audit: $(cat audit.txt)"
grep '"caller":"dashboards"' audit.txt | grep '"method":"DeleteDataset"' |
  grep -q '"outcome":"PERMISSION_DENIED"' || die "refused delete audit: $(cat audit.txt)"
grep '"caller":"alice"' audit.txt | grep '"method":"DeleteDataset"' |
  grep -q '"outcome":"OK"' || die "admin delete audit: $(cat audit.txt)"
grep -q '"outcome":"UNAUTHENTICATED"' audit.txt || die "no audit of refused calls"
if /usr/bin/python3 -c "import grpc" 2>/dev/null; then
  PYTHONPATH="$WORK/prefix/lib/python3/dist-packages" /usr/bin/python3 - "127.0.0.1:$PORT" \
    "$READER" <<'PY' || die "python client with a token"
import sys
import updp
tls = {"ca": "ca.pem", "cert": "client.pem", "key": "client.key"}
with updp.Client(sys.argv[1], token=sys.argv[2], tls=tls, timeout=20) as c:
    names = [d.name for d in c.datasets()]
    assert "vecs" in names, names
with updp.Client(sys.argv[1], tls=tls, timeout=20) as c:
    try:
        c.datasets()
        raise SystemExit("python: a call without a token was accepted")
    except updp.Error as e:
        assert "UNAUTHENTICATED" in str(e) or "credentials" in str(e), e
PY
fi
curl -fsS -o metrics.txt "http://127.0.0.1:$MPORT/metrics" || die "/metrics"
grep -q 'code="PERMISSION_DENIED"' metrics.txt || die "refused calls are not counted"
for t in "$READER" "$OPERATOR" "$ADMIN" not-a-token-0123456789; do
  if grep -qF -- "$t" server.log metrics.txt; then die "a token appears in the log or /metrics"; fi
done
stop_server

# --- Bad files stop the start, non-zero, naming the flag.
# bad_start WHAT PATTERN FLAG...: updp-server must exit non-zero with PATTERN on stderr.
bad_start() {
  local what=$1 pattern=$2 rc=0
  shift 2
  timeout 60 "$BUILD/updp-server" --host 127.0.0.1 --port "$PORT" --metrics_port 0 \
    --data_dir "$WORK/data" --allowed_roots "$WORK" "$@" >bad.log 2>&1 || rc=$?
  if [ "$rc" -eq 0 ] || [ "$rc" -eq 124 ]; then die "$what: exit $rc: $(cat bad.log)"; fi
  grep -q -- "$pattern" bad.log || die "$what: no '$pattern' in: $(cat bad.log)"
}
bad_start "missing certificate" "--tls_cert $WORK/nothere.pem: cannot read" \
  --tls_cert "$WORK/nothere.pem" --tls_key server.key
bad_start "missing key" "--tls_key nothere.key: cannot read" \
  --tls_cert server.pem --tls_key nothere.key
bad_start "mismatched key" "--tls_key client.key does not match the certificate in --tls_cert server.pem" \
  --tls_cert server.pem --tls_key client.key
bad_start "missing client CA" "--tls_client_ca nothere.pem: cannot read" \
  --tls_cert server.pem --tls_key server.key --tls_client_ca nothere.pem
bad_start "not a certificate" "--tls_cert server.key: no PEM certificate" \
  --tls_cert server.key --tls_key server.key
bad_start "client CA without a certificate" "needs both --tls_cert and --tls_key" \
  --tls_client_ca ca.pem
printf 'short reader\n' >short.txt
bad_start "short token" "--auth_tokens $WORK/short.txt line 1: the token must be 16-512" \
  --auth_tokens "$WORK/short.txt"
printf 'secret-0123456789abcdef root\n' >role.txt
bad_start "unknown role" "line 1: unknown role" --auth_tokens role.txt
if grep -q "secret-0123456789abcdef" bad.log; then die "a start-up error echoes the token"; fi
bad_start "missing tokens file" "--auth_tokens nothere.txt: cannot read" \
  --auth_tokens nothere.txt
bad_start "limit out of range" "--max_page_size 0" --max_page_size 0
echo "$TAG: OK"
