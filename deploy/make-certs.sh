#!/bin/sh
# TLS for the webhook without cert-manager: a CA and a serving certificate for the
# Service's DNS names, made with openssl, written to OUT_DIR (default ./ocimodel-certs).
#
#   deploy/make-certs.sh [OUT_DIR]            # make the files, print what to run next
#   deploy/make-certs.sh [OUT_DIR] --apply    # also create the TLS secret and set the
#                                             # caBundle of both webhook configurations
#
# Keep ca.key offline (or delete it): anyone holding it can impersonate the webhook.
set -eu

SERVICE=ocimodel-admission
NAMESPACE=ocimodel-system
SECRET=ocimodel-admission-tls
CONFIGURATION=ocimodel-admission
DAYS=${DAYS:-365}

OUT=${1:-./ocimodel-certs}
APPLY=${2:-}
mkdir -p "$OUT"
umask 077

openssl ecparam -name prime256v1 -genkey -noout -out "$OUT/ca.key"
openssl req -x509 -new -key "$OUT/ca.key" -sha256 -days 3650 -subj "/CN=ocimodel-admission-ca" \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
  -out "$OUT/ca.crt"

openssl ecparam -name prime256v1 -genkey -noout -out "$OUT/tls.key"
openssl req -new -key "$OUT/tls.key" -subj "/CN=$SERVICE.$NAMESPACE.svc" -out "$OUT/tls.csr"
cat > "$OUT/tls.ext" <<EXT
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=DNS:$SERVICE.$NAMESPACE.svc,DNS:$SERVICE.$NAMESPACE.svc.cluster.local
EXT
openssl x509 -req -in "$OUT/tls.csr" -CA "$OUT/ca.crt" -CAkey "$OUT/ca.key" -CAcreateserial \
  -days "$DAYS" -sha256 -extfile "$OUT/tls.ext" -out "$OUT/tls.crt" 2>/dev/null
rm -f "$OUT/tls.csr" "$OUT/tls.ext" "$OUT/ca.srl"
chmod 644 "$OUT/ca.crt" "$OUT/tls.crt"

CA_BUNDLE=$(base64 < "$OUT/ca.crt" | tr -d '\n')
printf '%s' "$CA_BUNDLE" > "$OUT/ca-bundle.b64"

if [ "$APPLY" = "--apply" ]; then
  kubectl -n "$NAMESPACE" create secret tls "$SECRET" --cert="$OUT/tls.crt" --key="$OUT/tls.key" \
    --dry-run=client -o yaml | kubectl apply -f -
  for kind in mutatingwebhookconfiguration validatingwebhookconfiguration; do
    kubectl patch "$kind" "$CONFIGURATION" --type=json \
      -p "[{\"op\": \"add\", \"path\": \"/webhooks/0/clientConfig/caBundle\", \"value\": \"$CA_BUNDLE\"}]"
  done
else
  echo "wrote $OUT/ca.crt, $OUT/tls.crt, $OUT/tls.key and $OUT/ca-bundle.b64; next:"
  echo "  kubectl -n $NAMESPACE create secret tls $SECRET --cert=$OUT/tls.crt --key=$OUT/tls.key"
  echo "  then set webhooks[0].clientConfig.caBundle of both $CONFIGURATION configurations to $OUT/ca-bundle.b64"
  echo "  (or run this script again with --apply once the configurations exist)"
fi
