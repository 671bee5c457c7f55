package model
import rego.v1
allow if {
    xs := [x | some x in input.tensors]
    count(xs) > 0 with input as {}
    http.send({"method": "get", "url": "https://example.com"})
}
