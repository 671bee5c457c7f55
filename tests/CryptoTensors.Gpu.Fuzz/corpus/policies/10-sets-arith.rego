package model
import rego.v1

a := {1, 2, 3}
b := {2}
c := a - b

default allow := false
allow if {
    count(c) == 2
    7 % 3 == 1
    10 / 4 == 2.5
    -3 < 0
    [1, [2, {"k": set()}]] == [1, [2, {"k": set()}]]
    x := input.context
    x == x
}
