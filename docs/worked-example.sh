#!/usr/bin/env bash
# A release from request to decrypted extract, each step by the role that performs it, over
# the HTTPS API with curl, against `steward demo` (its users' tokens are in demo.json).
#   docs/worked-example.sh steward-demo
set -euo pipefail
DEMO=${1:-steward-demo}
URL=$(jq -r .url "$DEMO/demo.json")
CA=$(jq -r .ca "$DEMO/demo.json")
token() { jq -r --arg role "$1" '.users[] | select(.role == $role) | .api_token' "$DEMO/demo.json"; }
api() { # api ROLE METHOD PATH [JSON]
  curl -sS --fail-with-body --cacert "$CA" -H "authorization: Bearer $(token "$1")" \
    -H 'content-type: application/json' -X "$2" "$URL$3" ${4:+--data "$4"}
}

# 1. The recipient files a Level I request and submits it.
RELEASE=$(api recipient POST /api/v1/requests '{
  "level": "I",
  "datasets": ["med_elig"],
  "elements": [
    { "element": "med_elig.member_gender" },
    { "element": "med_elig.year" }
  ],
  "purpose": "Enrollment by gender over time",
  "ultimate_recipient": "State University health policy group",
  "security_measures": "Encrypted laptops, access limited to the named analysts",
  "publication_plan": "Aggregate tables only, no cell under 11",
  "filters": { "years": { "first": 2021, "last": 2022 } }
}' | jq -r .id)
api recipient POST "/api/v1/releases/$RELEASE/submit" > /dev/null

# 2. The privacy officer reviews it; 3. the executive director approves it and records the DUA.
api privacy_officer POST "/api/v1/releases/$RELEASE/review" > /dev/null
api executive_director POST "/api/v1/releases/$RELEASE/approve" > /dev/null
RECIPIENT=$(api recipient GET /api/v1/me | jq -r .id)
TODAY=$(date -u +%F)
NEXT_YEAR=$(date -u -d '+1 year' +%F)
api executive_director POST "/api/v1/releases/$RELEASE/dua" "{
  \"number\": \"DUA-$(date -u +%Y)-0042\",
  \"effective\": \"$TODAY\", \"expiry\": \"$NEXT_YEAR\",
  \"authorized_users\": [\"$RECIPIENT\"], \"responsible\": \"$RECIPIENT\",
  \"download_limit\": 3, \"destruction_days\": 30
}" > /dev/null

# 4. IT staff start the extract and wait for it.
JOB=$(api it_staff POST "/api/v1/releases/$RELEASE/extract" | jq -r .id)
until [ "$(api it_staff GET "/api/v1/jobs/$JOB" | jq -r .state)" = succeeded ]; do sleep 1; done

# 5. The recipient downloads the data file through a short-lived link and decrypts it.
FILE=$(api recipient GET "/api/v1/releases/$RELEASE/files" |
  jq -r '.[] | select(.name == "med_elig.csv.zst.age") | .id')
LINK=$(api recipient POST "/api/v1/files/$FILE/links" | jq -r .url)
curl -sS --fail --cacert "$CA" -H "authorization: Bearer $(token recipient)" \
  -o med_elig.csv.zst.age "$URL$LINK"
age -d -i "$DEMO/recipient-identity.txt" med_elig.csv.zst.age | zstd -d > med_elig.csv
head -3 med_elig.csv
