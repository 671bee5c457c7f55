package model
import rego.v1

default allow := false

allowed_devices := {"cpu", "cuda:0"}

allow if {
    input.device in allowed_devices
    startswith(input.file, "model")
    count(input.keys.enc) > 0
}
