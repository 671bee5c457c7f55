package model
import rego.v1

default allow := false

allow if {
    regex.match(`^[a-z0-9._-]+$`, lower(input.file))
    glob.match("*.safetensors", [], input.file)
}
allow if glob.match("model*", ["."], input.file)
