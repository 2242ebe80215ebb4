#!/usr/bin/env bash
# Certificates for mutual TLS between the PM and the CRMs: a CA, a server certificate for the
# CRMs (valid for 127.0.0.1, localhost and any DNS names given) and a client certificate for
# the PM. Keeps what already exists, so running it again changes nothing.
#
#   crm-certs.sh DIR [DNS_NAME...]   writes DIR/{ca,crm,pm}.{crt,key}
set -euo pipefail
[[ $# -ge 1 ]] || { echo "usage: $0 DIR [DNS_NAME...]" >&2; exit 1; }
command -v openssl >/dev/null || { echo "openssl is required (apt-get install openssl)" >&2; exit 1; }
dir=$1; shift
mkdir -p "$dir"
cd "$dir"
[[ -f pm.crt && -f crm.crt && -f ca.crt ]] && exit 0
umask 077
san="IP:127.0.0.1,DNS:localhost"
for name in "$@"; do san+=",DNS:$name"; done

openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 825 \
  -subj "/CN=oaas-crm-ca" -addext "basicConstraints=critical,CA:TRUE" \
  -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
leaf() { # name subject extensions
  openssl req -newkey rsa:2048 -nodes -keyout "$1.key" -out "$1.csr" -subj "$2" 2>/dev/null
  printf '%s\n' "$3" > "$1.ext"
  openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 825 \
    -out "$1.crt" -extfile "$1.ext" 2>/dev/null
  rm -f "$1.csr" "$1.ext"
}
leaf crm "/CN=oaas-crm" "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=$san"
leaf pm "/CN=oaas-pm" "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=clientAuth"
chmod 644 ./*.crt
