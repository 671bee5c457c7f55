package model
import rego.v1

default allow := false

allow if {
    semver.is_valid("1.2.3")
    semver.compare("1.2.3", "1.10.0") < 0
    type_name(input) == "object"
    to_number("42") == 42
    sum([1, 2, 3]) == 6
    trim_space("  x ") == "x"
    split("a,b", ",") == ["a", "b"]
    concat("-", ["a", "b"]) == "a-b"
    upper("x") == "X"
    contains("hello", "ll")
}
