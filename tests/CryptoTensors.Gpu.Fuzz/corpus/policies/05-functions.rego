package model
import rego.v1

is_gpu(d) if startswith(d, "cuda")
is_gpu(d) if d == "gpu"

score(x) := y if y := x * 2 + 1

default allow := false
allow if {
    not is_gpu(input.device)
    score(3) == 7
    abs(-4) == 4
    max([1, 5, 3]) == 5
}
