#!/usr/bin/env python3
"""Writes docs/openapi.json (the Privacy Plane's OpenAPI 3.1 document) and its Swift copy,
Sources/PrivacyPlane/OpenAPIDocument.swift, which the plane serves at /openapi.json.
Edit this script, run it, commit both outputs (PlaneTests checks they agree with the router)."""
import json, os

ADDR = {"type": "string", "pattern": "^0x[0-9a-fA-F]{40}$", "description": "Ethereum address: all lowercase, all uppercase, or EIP-55 mixed case with a valid checksum (mixed case with a wrong checksum is refused, 422); EIP-55 in responses"}
HASH = {"type": "string", "pattern": "^[0-9a-f]{64}$"}
DSID = {"type": "string", "pattern": "^[a-z0-9][a-z0-9._-]{0,63}$", "minLength": 1, "maxLength": 64}
U64 = {"type": "integer", "minimum": 0, "maximum": 18446744073709551615}

def ref(n): return {"$ref": f"#/components/schemas/{n}"}
def ok(desc, schema=None, ctype="application/json"):
    r = {"description": desc}
    if schema is not None: r["content"] = {ctype: {"schema": schema}}
    return r
def problems(*codes):
    names = {400: "Malformed request", 401: "Not signed in, or the token or sign-in is invalid", 403: "Not allowed (not the owner; operator approval required)",
             404: "No such dataset, version or rental", 409: "Conflicts with the ledger (already exists, already ended)", 413: "Body too large",
             415: "Wrong content type", 422: "Well-formed but invalid fields", 503: "Store or ledger unavailable"}
    return {str(c): {"description": names[c], "content": {"application/problem+json": {"schema": ref("Problem")}}} for c in codes}
def jbody(schema): return {"required": True, "content": {"application/json": {"schema": schema}}}
BEARER = [{"bearer": []}]
ID = {"name": "id", "in": "path", "required": True, "schema": DSID, "description": "Dataset id"}

paths = {
  "/healthz": {"get": {"operationId": "health", "summary": "Liveness", "responses": {"200": ok("Up", ref("Health"))}}},
  "/metrics": {"get": {"operationId": "metrics", "summary": "Prometheus metrics (request counts and latency by route and status)",
                        "responses": {"200": ok("Prometheus text exposition format", {"type": "string"}, "text/plain")}}},
  "/openapi.json": {"get": {"operationId": "openapi", "summary": "This document", "responses": {"200": ok("OpenAPI 3.1", {"type": "object"})}}},
  "/v1/auth/nonce": {"get": {"operationId": "authNonce", "summary": "A single-use nonce and the fields of the EIP-4361 message to sign",
                              "responses": {"200": ok("Nonce", ref("Nonce"))}}},
  "/v1/auth/login": {"post": {"operationId": "authLogin", "summary": "Sign in with a signed EIP-4361 message; returns a bearer token",
                               "requestBody": jbody(ref("Login")),
                               "responses": {"200": ok("Signed in", ref("Token")), **problems(400, 401, 413, 415, 422, 503)}}},
  "/v1/auth/operator-approval": {
     "get": {"operationId": "operatorApprovalRequest", "summary": "The EIP-712 typed data (eth_signTypedData_v4) approving the plane as the caller's ledger operator", "security": BEARER,
             "parameters": [{"name": "expires", "in": "query", "required": False, "schema": U64, "description": "End of the approval (default: 30 days from now); 0 revokes"}],
             "responses": {"200": ok("Typed data to sign", ref("TypedData")), **problems(401, 422, 503)}},
     "post": {"operationId": "operatorApprove", "summary": "Record the caller's signed operator approval on the ledger", "security": BEARER,
             "requestBody": jbody(ref("Approval")),
             "responses": {"204": ok("Recorded"), **problems(400, 401, 409, 413, 415, 422, 503)}}},
  "/v1/datasets": {"post": {"operationId": "createDataset", "summary": "Create a dataset owned by the caller (registered on the ledger)", "security": BEARER,
                             "requestBody": jbody(ref("CreateDataset")),
                             "responses": {"201": ok("Created", ref("Dataset")), **problems(400, 401, 403, 409, 413, 415, 422, 503)}}},
  "/v1/datasets/{id}": {"get": {"operationId": "getDataset", "summary": "A dataset and its versions", "parameters": [ID],
                                 "responses": {"200": ok("Dataset", ref("Dataset")), **problems(404, 422, 503)}}},
  "/v1/datasets/{id}/versions": {
     "get": {"operationId": "listVersions", "summary": "Versions: root hashes, sizes, file counts (no names)", "parameters": [ID],
             "responses": {"200": ok("Versions", ref("VersionList")), **problems(404, 422, 503)}},
     "put": {"operationId": "uploadVersion", "summary": "Upload a version as a tar stream; the plane encrypts it as it reads", "security": BEARER, "parameters": [ID],
             "requestBody": {"required": True, "content": {"application/x-tar": {"schema": {"type": "string", "format": "binary"}},
                                                           "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}},
             "responses": {"201": ok("Stored and recorded", ref("NewVersion")), **problems(400, 401, 403, 404, 409, 413, 415, 422, 503)}}},
  "/v1/datasets/{id}/keys": {"post": {"operationId": "rotateKey", "summary": "Rotate the dataset's DEK (owner): later versions use the new key, recorded on the ledger", "security": BEARER,
             "parameters": [ID], "responses": {"201": ok("Rotated", ref("KeyRotation")), **problems(401, 403, 404, 422, 503)}}},
  "/v1/datasets/{id}/versions/{root}": {"delete": {"operationId": "deleteVersion", "summary": "Delete a version's objects (the ledger keeps its history)", "security": BEARER,
             "parameters": [ID, {"name": "root", "in": "path", "required": True, "schema": HASH}],
             "responses": {"204": ok("Deleted"), **problems(401, 403, 404, 422, 503)}}},
  "/v1/datasets/{id}/rentals": {"post": {"operationId": "grantRental", "summary": "Grant a rental (owner)", "security": BEARER, "parameters": [ID],
             "requestBody": jbody(ref("GrantRental")),
             "responses": {"201": ok("Granted", ref("Rental")), **problems(400, 401, 403, 404, 409, 413, 415, 422, 503)}}},
  "/v1/datasets/{id}/rentals/{rental}": {
     "get": {"operationId": "rentalStatus", "summary": "Whether an address holds an active rental ({rental} is the address)",
             "parameters": [ID, {"name": "rental", "in": "path", "required": True, "schema": ADDR, "description": "The user's address"}],
             "responses": {"200": ok("Status", ref("RentalStatus")), **problems(404, 422, 503)}},
     "delete": {"operationId": "endRental", "summary": "End a rental early (owner; {rental} is the rental id)", "security": BEARER,
             "parameters": [ID, {"name": "rental", "in": "path", "required": True, "schema": {"type": "string", "pattern": "^[1-9][0-9]{0,19}$"}, "description": "The rental id"}],
             "responses": {"204": ok("Ended"), **problems(401, 403, 404, 409, 422, 503)}}},
  "/v1/key-release/challenge": {"post": {"operationId": "keyReleaseChallenge", "summary": "A single-use, MAC'd challenge for a key release (docs/key-release.md §1); no token: the credential and the evidence authenticate",
             "requestBody": jbody(ref("ChallengeRequest")),
             "responses": {"201": ok("Challenge", ref("Challenge")), **problems(400, 403, 404, 413, 415, 422, 503)}}},
  "/v1/key-release": {"post": {"operationId": "keyRelease", "summary": "Attested key release: evidence bound to the challenge, the ephemeral key and the Job Credential; the DEKs wrapped to the CVM and a signed lease (docs/key-release.md §3)",
             "requestBody": jbody(ref("ReleaseRequest")),
             "responses": {"200": ok("Keys and lease", ref("ReleaseResponse")), **problems(400, 403, 404, 409, 413, 415, 422, 503)}}},
  "/v1/leases/renew": {"post": {"operationId": "renewLease", "summary": "Renew a lease; the rental is checked again (docs/key-release.md §5)",
             "requestBody": jbody(ref("LeaseRenewRequest")),
             "responses": {"200": ok("Lease", ref("Lease")), **problems(400, 403, 404, 413, 415, 422, 503)}}},
  "/v1/access-log": {"post": {"operationId": "accessLog", "summary": "Record the Merkle root of a job's access log on the ledger (docs/key-release.md §6)",
             "requestBody": jbody(ref("AccessLogSubmission")),
             "responses": {"201": ok("Recorded", ref("AccessLogReceipt")), **problems(400, 403, 404, 409, 413, 415, 422, 503)}}},
  "/v1/audit": {"get": {"operationId": "audit", "summary": "Ledger events about a dataset with inclusion proofs against a checkpoint signed by the plane",
             "parameters": [{"name": "dataset", "in": "query", "required": True, "schema": DSID}],
             "responses": {"200": ok("Audit trail", ref("AuditTrail")), **problems(400, 404, 422, 503)}}},
}

schemas = {
  "Problem": {"type": "object", "description": "RFC 9457 problem details", "required": ["type", "title", "status", "detail"],
              "properties": {"type": {"type": "string"}, "title": {"type": "string"}, "status": {"type": "integer"}, "detail": {"type": "string"}, "instance": {"type": "string"}}},
  "Health": {"type": "object", "required": ["status"], "properties": {"status": {"const": "ok"}}},
  "Nonce": {"type": "object", "required": ["nonce", "domain", "uri", "chainId", "statement", "expiresAt"],
            "properties": {"nonce": {"type": "string"}, "domain": {"type": "string"}, "uri": {"type": "string"}, "chainId": U64, "statement": {"type": "string"}, "expiresAt": U64}},
  "Login": {"type": "object", "required": ["message", "signature"], "properties": {"message": {"type": "string", "maxLength": 4096}, "signature": {"type": "string", "pattern": "^0x[0-9a-fA-F]{130}$"}}},
  "Token": {"type": "object", "required": ["token", "address", "expiresAt"], "properties": {"token": {"type": "string"}, "address": ADDR, "expiresAt": U64}},
  "TypedData": {"type": "object", "required": ["types", "primaryType", "domain", "message"],
                "properties": {"types": {"type": "object"}, "primaryType": {"const": "OperatorApproval"},
                               "domain": {"type": "object", "required": ["name", "version", "chainId", "verifyingContract", "salt"],
                                          "properties": {"name": {"type": "string"}, "version": {"type": "string"}, "chainId": U64, "verifyingContract": ADDR, "salt": {"type": "string", "pattern": "^0x[0-9a-f]{64}$"}}},
                               "message": {"type": "object", "required": ["owner", "operator", "expires", "nonce"],
                                           "properties": {"owner": ADDR, "operator": ADDR, "expires": U64, "nonce": U64}}}},
  "KeyRotation": {"type": "object", "required": ["key"], "properties": {"key": {"type": "integer", "minimum": 1}}},
  "Approval": {"type": "object", "required": ["expires", "nonce", "signature"], "properties": {"expires": U64, "nonce": U64, "signature": {"type": "string", "pattern": "^0x[0-9a-fA-F]{130}$"}}},
  "CreateDataset": {"type": "object", "required": ["id"], "properties": {"id": DSID, "policyHash": HASH}},
  "Version": {"type": "object", "required": ["root", "files", "bytes", "createdAt"], "properties": {"root": HASH, "files": {"type": "integer"}, "bytes": {"type": "integer"}, "createdAt": U64}},
  "NewVersion": {"type": "object", "required": ["root", "files", "bytes"], "properties": {"root": HASH, "files": {"type": "integer"}, "bytes": {"type": "integer"}, "createdAt": U64}},
  "VersionList": {"type": "object", "required": ["versions"], "properties": {"versions": {"type": "array", "items": ref("Version")}}},
  "Dataset": {"type": "object", "required": ["id", "owner", "policyHash", "versions"],
              "properties": {"id": DSID, "owner": ADDR, "policyHash": HASH, "versions": {"type": "array", "items": ref("Version")}}},
  "GrantRental": {"type": "object", "required": ["user", "expires"], "properties": {"user": ADDR, "expires": U64}},
  "Rental": {"type": "object", "required": ["rentalId", "user", "expires"], "properties": {"rentalId": U64, "user": ADDR, "expires": U64}},
  "RentalStatus": {"type": "object", "required": ["active"], "properties": {"active": {"type": "boolean"}, "rentalId": U64, "expires": U64}},
  "AuditEvent": {"type": "object", "required": ["index", "time", "actor", "kind", "event", "leafHash", "entry", "proof"],
                 "properties": {"index": U64, "time": U64, "actor": ADDR, "kind": {"type": "string"}, "event": {"type": "string"}, "dataset": {"type": "string"},
                                "payloadHash": HASH, "leafHash": HASH, "entry": {"type": "string", "description": "the entry body, hex (its SHA-256 with a 0x00 prefix is the leaf hash)"},
                                "proof": {"type": "array", "items": HASH}}},
  "DatasetVersion": {"type": "object", "required": ["id", "root"], "properties": {"id": DSID, "root": HASH}},
  "JobCredential": {"type": "object", "required": ["version", "job", "signer", "datasets", "measurement", "image", "expires", "signature"],
                    "properties": {"version": {"type": "integer"}, "job": {"type": "string"}, "signer": ADDR, "datasets": {"type": "array", "items": ref("DatasetVersion")},
                                   "measurement": {"type": "string"}, "image": {"type": "string"}, "expires": U64, "signature": {"type": "string"}}},
  "ChallengeRequest": {"type": "object", "required": ["datasets", "credentialHash"],
                       "properties": {"datasets": {"type": "array", "items": ref("DatasetVersion")}, "credentialHash": {"type": "string"}}},
  "Challenge": {"type": "object", "required": ["session", "nonce", "datasets", "credentialHash", "expiresAt", "mac"],
                "properties": {"session": {"type": "string"}, "nonce": {"type": "string"}, "datasets": {"type": "array", "items": ref("DatasetVersion")},
                               "credentialHash": {"type": "string"}, "expiresAt": U64, "mac": {"type": "string"}}},
  "Evidence": {"type": "object", "required": ["provider", "outblob", "auxblob"],
               "properties": {"provider": {"type": "string"}, "outblob": {"type": "string", "description": "base64"}, "auxblob": {"type": "string", "description": "base64"}}},
  "ReleaseRequest": {"type": "object", "required": ["challenge", "evidence", "publicKey", "credential"],
                     "properties": {"challenge": ref("Challenge"), "evidence": ref("Evidence"), "publicKey": {"type": "string"}, "credential": ref("JobCredential")}},
  "WrappedKey": {"type": "object", "required": ["dataset", "root", "wrapped"], "properties": {"dataset": DSID, "root": HASH, "wrapped": {"type": "string"}}},
  "Lease": {"type": "object", "required": ["session", "exchange", "plane", "holder", "job", "datasets", "issuedAt", "expiresAt", "notAfter", "signature"],
            "properties": {"session": {"type": "string"}, "exchange": {"type": "string"}, "plane": ADDR, "holder": ADDR, "job": {"type": "string"},
                           "datasets": {"type": "array", "items": ref("DatasetVersion")}, "issuedAt": U64, "expiresAt": U64, "notAfter": U64, "signature": {"type": "string"}}},
  "ReleaseResponse": {"type": "object", "required": ["session", "planePublicKey", "keys", "lease"],
                      "properties": {"session": {"type": "string"}, "planePublicKey": {"type": "string"}, "keys": {"type": "array", "items": ref("WrappedKey")}, "lease": ref("Lease")}},
  "LeaseRenewRequest": {"type": "object", "required": ["lease"], "properties": {"lease": ref("Lease")}},
  "AccessLogSubmission": {"type": "object", "required": ["lease", "root", "entries"], "properties": {"lease": ref("Lease"), "root": {"type": "string"}, "entries": U64}},
  "AccessLogReceipt": {"type": "object", "required": ["session", "root", "entries", "ledgerIndexes"],
                       "properties": {"session": {"type": "string"}, "root": {"type": "string"}, "entries": U64, "ledgerIndexes": {"type": "array", "items": U64}}},
  "AuditTrail": {"type": "object", "required": ["checkpoint", "events"], "properties": {"checkpoint": {"type": "string", "description": "C2SP signed note"}, "events": {"type": "array", "items": ref("AuditEvent")}}},
}

doc = {"openapi": "3.1.0",
       "info": {"title": "cce4long Privacy Plane", "version": "1.0.0",
                "description": "Wallet sign-in (EIP-4361), encrypted dataset upload, versions, rentals, audit, and attested key release with leases. Errors are RFC 9457 application/problem+json. See docs/plane.md."},
       "servers": [{"url": "http://127.0.0.1:8443"}],
       "paths": paths,
       "components": {"schemas": schemas, "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "description": "Token from POST /v1/auth/login"}}}}

root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
text = json.dumps(doc, indent=2, sort_keys=True) + "\n"
with open(os.path.join(root, "docs/openapi.json"), "w") as f: f.write(text)
with open(os.path.join(root, "Sources/PrivacyPlane/OpenAPIDocument.swift"), "w") as f:
    f.write("// Generated by scripts/plane-openapi.py from the same source as docs/openapi.json: do not edit.\n")
    f.write("enum OpenAPI {\n    /// The OpenAPI 3.1 document served at /openapi.json.\n    static let document = #\"\"\"\n")
    f.write(text + "\n")  # a multi-line literal drops the newline before its closing delimiter
    f.write("\"\"\"#\n}\n")
