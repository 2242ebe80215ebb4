#!/usr/bin/env bash
# Certificates for mutual TLS between the PM and the CRMs: a CA, a server certificate for the
# CRMs (valid for 127.0.0.1, localhost and any DNS names given) and a client certificate for
# the PM. Keeps what already exists, so running it again changes nothing.
#
#   crm-certs.sh DIR [DNS_NAME...]   writes DIR/{ca,crm,pm}.{crt,key}
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
[[ $# -ge 1 ]] || die "usage: $0 DIR [DNS_NAME...]"
dir=$1; shift
mkdir -p "$dir"
cd "$dir"
[[ -f pm.crt && -f crm.crt && -f ca.crt ]] && exit 0
umask 077
san="IP:127.0.0.1,DNS:localhost"
for name in "$@"; do san+=",DNS:$name"; done

new_ca oaas-crm-ca
new_leaf crm "/CN=oaas-crm" "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=$san"
new_leaf pm "/CN=oaas-pm" "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=clientAuth"
chmod 644 ./*.crt
