package model
import rego.v1

default allow := false

allow if {
    every k, v in {"a": 1, "b": 2} { v > 0; k != "" }
    some i, x in [10, 20, 30]
    x == 20
    i == 1
    object.get(input, ["context", "tier"], "free") in {"free", "pro"}
}
