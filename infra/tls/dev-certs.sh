#!/usr/bin/env bash
# Development TLS material for docker compose (the proxy's HTTPS and RabbitMQ's MQTT on 8883): a private
# CA and one server certificate for localhost, millrace.localtest.me and the compose host names.
# Written under .run/ (git-ignored) by default: never commit them. Production uses certificates
# from the company CA or ACME, in the same file names.
#
#   infra/tls/dev-certs.sh [DIR] [EXTRA_DNS_NAME...]      # DIR defaults to .run/tls
#   then TLS_DIR=DIR in .env; clients trust DIR/ca.crt
set -euo pipefail
dir="${1:-.run/tls}"
shift || true
mkdir -p "$dir"
cd "$dir"
names=(localhost millrace.localtest.me mqtt.localtest.me proxy rabbitmq "$@")
san="IP:127.0.0.1"
for n in "${names[@]}"; do san="$san,DNS:$n"; done

if [[ ! -s ca.key || ! -s ca.crt ]]; then
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 825 \
        -subj "/CN=Millrace development CA" -keyout ca.key -out ca.crt 2>/dev/null
fi
openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -subj "/CN=millrace.localtest.me" -keyout server.key -out server.csr 2>/dev/null
openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 397 \
    -extfile <(printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth\n' "$san") \
    -out server.crt 2>/dev/null
rm -f server.csr ca.srl
# Read inside the containers by nginx and by RabbitMQ (uid 999): development only.
chmod 0644 server.crt ca.crt server.key
chmod 0600 ca.key
echo "TLS material in $dir: ca.crt (trust it), server.crt, server.key ($san)"
