package model
import rego.v1

default allow := false

expiry := time.parse_rfc3339_ns("2099-01-01T00:00:00Z")

allow if time.now_ns() < expiry
