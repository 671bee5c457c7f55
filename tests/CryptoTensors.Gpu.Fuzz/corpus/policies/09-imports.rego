package model
import rego.v1
import input.context as ctx
import data.model.ok

ok if ctx.licence == "abc"
ok if not ctx.licence

allow := true if ok
allow := false if not ok
