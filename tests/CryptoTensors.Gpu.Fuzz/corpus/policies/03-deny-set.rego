package model
import rego.v1

default allow := false

deny contains msg if {
    some t in input.tensors
    endswith(t, ".secret")
    msg := sprintf("tensor %v is secret", [t])
}

allow if count(deny) == 0
