# Helpers for the walkthroughs in docs/scenarios.md. Source this file in a
# shell at the repository root while `syncline-local up` runs in another:
#   . docs/scenarios/helpers.sh
# Needs curl, jq and (scenario 3) openssl.

S=${SYNCLINE_URL:-http://127.0.0.1:8080}
DEMO=${SYNCLINE_DEMO_URL:-http://127.0.0.1:8090}
syncline_local() { cargo run -q -p syncline-local -- "$@"; }
ADMIN=$(syncline_local token demo admin)
CLIENT=$(syncline_local token demo)

# invoke FUNCTION EVENT-JSON: the Lambda Invoke API (scheduled-sync,
# discrepancy-check, retry-worker).
invoke() { curl -s -X POST "$S/2015-03-31/functions/$1/invocations" -d "$2"; echo; }

# admin METHOD PATH [BODY]: admin-api as an operator; prints the body (on
# stdout, for jq) and the HTTP status (on stderr).
admin() {
  curl -s -X "$1" "$S$2" -H "authorization: Bearer $ADMIN" ${3:+-d "$3"} -w '%{stderr}\nHTTP %{http_code}'
  echo
}

# client METHOD PATH [BODY]: sync-api as a client of tenant demo (or of the
# tenant whose token is in $TOKEN).
client() {
  curl -s -X "$1" "$S$2" -H "authorization: Bearer ${TOKEN:-$CLIENT}" ${3:+-d "$3"}
  echo
}

# demo PATH [BODY]: the demo source's control routes (change data upstream).
demo() { curl -s -X POST "$DEMO/_demo/$1" -H 'content-type: application/json' -d "${2:-{\}}"; echo; }

# replay FILE: sends a sample API Gateway event from events/webhook/ as the
# HTTP request it describes (same path, headers and body).
replay() {
  local args=()
  while IFS= read -r header; do args+=(-H "$header"); done \
    < <(jq -r '.headers | to_entries[] | "\(.key): \(.value)"' "$1")
  jq -j .body "$1" | curl -s -X POST "$S$(jq -r .rawPath "$1")" "${args[@]}" --data-binary @- \
    -w '%{stderr}\nHTTP %{http_code}'
  echo
}

# field_app FILE: posts a field-app webhook body, signed with HMAC-SHA256 and
# the scenario's local secret.
field_app() {
  local sig
  sig=$(openssl dgst -sha256 -hmac field-app-local-secret -hex < "$1" | sed 's/^.* //')
  curl -s -X POST "$S/v1/webhooks/field-app" -H "x-field-signature: sha256=$sig" \
    --data-binary @"$1" -w '%{stderr}\nHTTP %{http_code}'
  echo
}
