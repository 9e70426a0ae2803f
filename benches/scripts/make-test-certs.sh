#!/usr/bin/env bash
# Makes a CA and two certificates it signs (node, client; for 127.0.0.1 and
# localhost) in DIR, for trying TLS by hand: bash make-test-certs.sh DIR
set -euo pipefail
mkdir -p "$1" && cd "$1"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca-key.pem -out ca.pem -days 30 -subj /CN=bench-ca -addext basicConstraints=critical,CA:TRUE 2>/dev/null
for n in node client; do
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout $n-key.pem -out $n.csr -subj /CN=$n 2>/dev/null
  printf "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth,clientAuth\n" > $n.ext
  openssl x509 -req -in $n.csr -CA ca.pem -CAkey ca-key.pem -CAcreateserial -out $n.pem -days 30 -extfile $n.ext 2>/dev/null
done
