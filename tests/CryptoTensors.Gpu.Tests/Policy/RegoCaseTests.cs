using System.Text.Json;
using CryptoTensors.Gpu.Policy;

namespace CryptoTensors.Gpu.Tests.Policy;

public enum Expect
{
    Allow,
    Deny,
    Undefined,
    NotBoolean,
    EvalFailed,
    Unsupported,
}

/// <summary>One table case: a policy, an input (JSON or null for none), and the expected outcome.</summary>
/// <param name="Position">For errors: the <c>line:column</c> the message must name.</param>
/// <param name="MessagePart">For errors: a fragment the message must contain.</param>
public sealed record RegoCase(string Name, string Policy, string? Input, Expect Expected, string? Position = null, string? MessagePart = null)
{
    public override string ToString() => Name;
}

public class RegoCaseTests
{
    private const string Head = "package model\nimport rego.v1\n";

    private static RegoCase Allow(string name, string rules, string? input = null) => new(name, Head + rules, input, Expect.Allow);
    private static RegoCase Deny(string name, string rules, string? input = null) => new(name, Head + rules, input, Expect.Deny);
    private static RegoCase Undef(string name, string rules, string? input = null) => new(name, Head + rules, input, Expect.Undefined);
    private static RegoCase NotBool(string name, string rules, string? input = null) => new(name, Head + rules, input, Expect.NotBoolean);

    private static RegoCase Fails(string name, string rules, string? input = null, string? message = null)
        => new(name, Head + rules, input, Expect.EvalFailed, MessagePart: message);

    /// <summary>A refused policy; <paramref name="policy"/> is the complete text so positions are exact.</summary>
    private static RegoCase Rejected(string name, string policy, string? position, string? message = null)
        => new(name, policy, null, Expect.Unsupported, position, message);

    public static IEnumerable<TestCaseData> Cases() => All().Select(c => new TestCaseData(c).SetName("Rego_" + c.Name));

    private static IEnumerable<RegoCase> All()
    {
        // ---- rule forms ----
        yield return new("reference_default_policy_allows", "package model\nallow = true", null, Expect.Allow);
        yield return new("default_policy_constant", PolicyEngine.DefaultPolicy, """{"x": 1}""", Expect.Allow);
        yield return new("v1_without_import_rego_v1", "package model\nallow if input.x == 1", """{"x": 1}""", Expect.Allow);
        yield return Allow("if_block", "allow if { input.x == 1 }", """{"x": 1}""");
        yield return Undef("if_block_false_is_undefined", "allow if { input.x == 1 }", """{"x": 2}""");
        yield return Deny("default_false", "default allow := false\nallow if input.x == 1", """{"x": 2}""");
        yield return Allow("default_false_overridden", "default allow := false\nallow if input.x == 1", """{"x": 1}""");
        yield return Allow("default_with_unify", "default allow = false\nallow = true if input.x == 1", """{"x": 1}""");
        yield return Allow("assign_true_if", "allow := true if input.x == 1", """{"x": 1}""");
        yield return Allow("unify_true_if_block", "allow = true if {\n  input.x == 1\n}", """{"x": 1}""");
        yield return Allow("single_expression_body", """allow if input.user.name == "alice" """, """{"user": {"name": "alice"}}""");
        yield return Deny("constant_false", "allow := false");
        yield return Allow("bodies_are_or_second", "allow if input.a == 1\nallow if input.b == 2", """{"b": 2}""");
        yield return Allow("bodies_are_or_first", "allow if input.a == 1\nallow if input.b == 2", """{"a": 1, "b": 0}""");
        yield return Undef("bodies_are_or_none", "allow if input.a == 1\nallow if input.b == 2", """{"a": 3}""");
        yield return Fails("conflicting_complete_values", "allow := true if input.a\nallow := false if input.b", """{"a": true, "b": true}""", "conflicting");
        yield return Allow("equal_values_do_not_conflict", "allow := true if input.a\nallow := true if input.b", """{"a": true, "b": true}""");
        yield return Deny("only_false_body_succeeds", "allow := true if input.a\nallow := false if input.b", """{"a": false, "b": true}""");
        yield return Fails("conflict_from_iteration", "allow := x if { some x in input.flags }", """{"flags": [true, false]}""", "conflicting");
        yield return NotBool("non_boolean_string", "allow := \"yes\"");
        yield return NotBool("non_boolean_number", "allow := 1");
        yield return NotBool("non_boolean_object", "allow := {\"a\": true}");
        yield return NotBool("non_boolean_partial_set", "allow contains 1");
        yield return Allow("default_true_when_body_undefined", "default allow := true\nallow := false if input.block");
        yield return Allow("newline_separated_literals", "allow if {\n  input.a == 1\n  input.b == 2\n\n  input.c == 3\n}", """{"a": 1, "b": 2, "c": 3}""");
        yield return Allow("semicolon_separated_literals", "allow if { input.a == 1; input.b == 2 }", """{"a": 1, "b": 2}""");
        yield return Undef("semicolon_second_fails", "allow if { input.a == 1; input.b == 3 }", """{"a": 1, "b": 2}""");
        yield return Allow("comments", "# leading\nallow if { # trailing\n  input.a == 1 # why\n  # alone\n}\n# end", """{"a": 1}""");
        yield return Allow("rule_value_from_body", "allow := x if { x := input.flag }", """{"flag": true}""");
        yield return Allow("operand_on_next_line", "allow if {\n  x := 1 +\n    2\n  x == 3\n}");

        // ---- helper rules, data.model references, undefined ----
        yield return Allow("helper_rule", "is_admin if \"admin\" in input.roles\nallow if is_admin", """{"roles": ["dev", "admin"]}""");
        yield return Allow("data_model_reference", "is_admin if \"admin\" in input.roles\nallow if data.model.is_admin", """{"roles": ["admin"]}""");
        yield return Allow("helper_value_rule", "level := 3\nallow if level > 2");
        yield return Allow("helper_rule_path", "cfg := {\"limits\": {\"max\": 5}}\nallow if cfg.limits.max == 5");
        yield return Undef("helper_undefined_propagates", "v := input.nope\nallow if v == 1", """{"x": 1}""");
        yield return Allow("not_of_undefined_is_true", "allow if not input.missing");
        yield return Allow("not_of_undefined_rule_is_true", "bad if input.bad == true\nallow if not bad", """{"bad": false}""");
        yield return Undef("not_of_true_fails", "allow if not input.flag", """{"flag": true}""");
        yield return Allow("not_of_false_succeeds", "allow if not input.flag", """{"flag": false}""");
        yield return Allow("not_comparison", "allow if not input.x == 1", """{"x": 2}""");
        yield return Allow("not_unification", "allow if not input.x = 1", """{"x": 2}""");
        yield return Undef("missing_path_is_undefined", "allow if input.a.b.c == 1", """{"a": {}}""");
        yield return Deny("missing_path_with_default", "default allow := false\nallow if input.a.b.c == 1", """{"a": {"b": 1}}""");
        yield return Undef("no_input_is_undefined", "allow if input.x");
        yield return Allow("json_null_input", "allow if input == null", "null");
        yield return Undef("false_expression_fails_body", "allow if input.x", """{"x": false}""");
        yield return Allow("truthy_non_boolean_expression", "allow if input.x", """{"x": "anything"}""");
        yield return Undef("undefined_argument_makes_call_undefined", "allow if count(input.nope) == 0");
        yield return Undef("undefined_element_makes_array_undefined", "allow if [1, input.nope] != [1, 2]");

        // ---- functions ----
        yield return Allow("function_with_body", "double(x) := y if { y := x * 2 }\nallow if double(3) == 6");
        yield return Allow("function_without_body", "inc(x) := x + 1\nallow if inc(input.n) == 5", """{"n": 4}""");
        yield return Allow("boolean_function", "is_even(x) if x % 2 == 0\nallow if is_even(input.n)", """{"n": 4}""");
        yield return Undef("boolean_function_fails", "is_even(x) if x % 2 == 0\nallow if is_even(input.n)", """{"n": 3}""");
        yield return Allow("function_constant_params", "g(\"a\") := 1\ng(\"b\") := 2\nallow if g(input.k) == 2", """{"k": "b"}""");
        yield return Undef("function_no_matching_definition", "g(\"a\") := 1\nallow if g(input.k) == 1", """{"k": "z"}""");
        yield return Fails("function_conflicting_outputs", "h(x) := 1 if x > 0\nh(x) := 2 if x > 1\nallow if h(5) == 1", null, "conflicting");
        yield return Allow("function_wildcard_param", "k(_) := true\nallow if k(1)");
        yield return Allow("function_two_params", "between(x, lo, hi) if { x >= lo; x <= hi }\nallow if between(5, 1, 10)");
        yield return Allow("function_calls_function", "sq(x) := x * x\nsum2(a, b) := sq(a) + sq(b)\nallow if sum2(3, 4) == 25");
        yield return Allow("function_via_data_model", "sq(x) := x * x\nallow if data.model.sq(3) == 9");

        // ---- assignment and unification ----
        yield return Allow("assign_chain", "allow if {\n  x := input.a\n  y := x + 1\n  y == 3\n}", """{"a": 2}""");
        yield return Allow("unify_binds_unbound_var", "allow if { x = input.a; x == 2 }", """{"a": 2}""");
        yield return Allow("unify_binds_right_side", "allow if { input.a = x; x == 2 }", """{"a": 2}""");
        yield return Allow("unify_compares_ground", "allow if { input.a = 2 }", """{"a": 2}""");
        yield return Undef("unify_compares_ground_false", "allow if { input.a = 3 }", """{"a": 2}""");
        yield return Allow("v0_some_declaration", "allow if {\n  some i\n  input.list[i] == \"b\"\n  i == 1\n}", """{"list": ["a", "b"]}""");

        // ---- some / every / in / iteration ----
        yield return Allow("some_in_array", "allow if {\n  some t in input.tensors\n  startswith(t, \"enc.\")\n}", """{"tensors": ["a", "enc.w"]}""");
        yield return Undef("some_in_no_match", "allow if {\n  some t in input.tensors\n  startswith(t, \"enc.\")\n}", """{"tensors": ["a", "b"]}""");
        yield return Allow("some_key_value_in_object", "allow if {\n  some k, v in input.labels\n  k == \"team\"\n  v == \"ml\"\n}", """{"labels": {"a": "b", "team": "ml"}}""");
        yield return Allow("some_index_value_in_array", "allow if { some i, x in [\"a\", \"b\"]; x == \"b\"; i == 1 }");
        yield return Allow("some_in_set", "allow if { some x in {1, 2, 3}; x > 2 }");
        yield return Undef("some_in_scalar_has_no_elements", "allow if { some x in 5; x == 5 }");
        yield return Allow("every_passes", "allow if every t in input.tensors { startswith(t, \"w\") }", """{"tensors": ["w1", "w2"]}""");
        yield return Undef("every_one_fails", "allow if every t in input.tensors { startswith(t, \"w\") }", """{"tensors": ["w1", "b2"]}""");
        yield return Allow("every_empty_is_true", "allow if every t in input.tensors { false }", """{"tensors": []}""");
        yield return Allow("every_key_value", "allow if every k, v in input.limits { v < 10; k != \"\" }", """{"limits": {"a": 1, "b": 9}}""");
        yield return Undef("every_undefined_domain", "allow if every t in input.tensors { true }", """{"x": 1}""");
        yield return Undef("every_non_collection_is_false", "allow if every t in input.tensors { true }", """{"tensors": 7}""");
        yield return Allow("every_body_uses_outer_var", "allow if {\n  p := \"w\"\n  every t in input.tensors {\n    startswith(t, p)\n  }\n}", """{"tensors": ["w1"]}""");
        yield return Allow("in_array", "allow if \"admin\" in input.roles", """{"roles": ["admin"]}""");
        yield return Deny("in_array_false_with_default", "default allow := false\nallow if \"admin\" in input.roles", """{"roles": ["dev"]}""");
        yield return Allow("key_value_in_object", "allow if \"team\", \"ml\" in input.labels", """{"labels": {"team": "ml"}}""");
        yield return Allow("not_in", "allow if not \"banned\" in input.roles", """{"roles": ["dev"]}""");
        yield return Allow("in_object_values_and_sets", "allow if { 3 in {\"a\": 3}; 2 in {1, 2}; not 4 in {1, 2} }");
        yield return Allow("in_as_value", "allow := \"a\" in [\"a\"]");
        yield return Allow("wildcard_iteration", "allow if input.list[_] == \"x\"", """{"list": ["a", "x"]}""");
        yield return Allow("index_variable_binding", "allow if { input.list[i] == \"x\"; i == 1 }", """{"list": ["a", "x"]}""");
        yield return Allow("bound_key_lookup", "allow if { k := \"b\"; input.m[k] == 2 }", """{"m": {"a": 1, "b": 2}}""");
        yield return Allow("nested_wildcards", "allow if input.groups[_].members[_] == \"bob\"", """{"groups": [{"members": ["al"]}, {"members": ["bob"]}]}""");
        yield return Allow("same_index_var_twice", "allow if { input.a[i] == \"x\"; input.b[i] == \"y\" }", """{"a": ["x", "x"], "b": ["z", "y"]}""");
        yield return Allow("not_with_wildcard_absent", "allow if not input.list[_] == \"bad\"", """{"list": ["a", "b"]}""");
        yield return Undef("not_with_wildcard_present", "allow if not input.list[_] == \"bad\"", """{"list": ["a", "bad"]}""");
        yield return Allow("partial_set_empty", "deny contains msg if {\n  some t in input.tensors\n  not startswith(t, \"ok\")\n  msg := sprintf(\"bad %s\", [t])\n}\nallow if count(deny) == 0", """{"tensors": ["ok1"]}""");
        yield return Undef("partial_set_nonempty", "deny contains msg if {\n  some t in input.tensors\n  not startswith(t, \"ok\")\n  msg := sprintf(\"bad %s\", [t])\n}\nallow if count(deny) == 0", """{"tensors": ["ok1", "x"]}""");
        yield return Allow("partial_set_membership", "deny contains sprintf(\"bad %s\", [t]) if { some t in input.tensors; t != \"ok\" }\nallow if \"bad x\" in deny", """{"tensors": ["ok", "x"]}""");
        yield return Allow("partial_set_several_definitions", "s contains 1\ns contains 2 if true\ns contains 3 if false\nallow if s == {1, 2}");

        // ---- literals ----
        yield return Allow("string_escapes", """allow if "a\tb\n\"\u0041\\\/" == concat("", ["a", "\tb\n", "\"", "A", "\\", "/"])""");
        yield return Allow("raw_string", "allow if `a\\b\"c` == \"a\\\\b\\\"c\"");
        yield return Allow("raw_string_multiline", "allow if count(`a\nb`) == 3");
        yield return Allow("float_arithmetic", "allow if 1.5 + 1.5 == 3");
        yield return Allow("int_equals_float", "allow if { 1 == 1.0; 2.0 == 2; {1.0} == {1} }");
        yield return Allow("exponent_literal", "allow if { 1e3 == 1000; 2.5E-1 == 0.25 }");
        yield return Allow("booleans_and_null", "allow if { null == null; true != false; input.n == null }", """{"n": null}""");
        yield return Allow("nested_arrays", "allow if [1, [2, 3]] == [1, [2, 3]]");
        yield return Allow("objects_unordered", "allow if { {\"a\": 1, \"b\": 2} == {\"b\": 2, \"a\": 1} }");
        yield return Allow("sets_dedupe", "allow if { {1, 2} == {2, 1, 1}; count({1, 1}) == 1 }");
        yield return Allow("empty_set_is_not_empty_object", "allow if { count(set()) == 0; set() != {}; {} == {} }");
        yield return Allow("multiline_collections", "allow if {\n  x := [\n    1,\n    2,\n  ]\n  y := {\n    \"a\": 1,\n  }\n  count(x) + count(y) == 3\n}");
        yield return Allow("literal_object_path", "allow if { x := {\"a\": {\"b\": 5}}; x.a.b == 5; x[\"a\"][\"b\"] == 5 }");
        yield return Allow("array_index", "allow if { x := [10, 20]; x[1] == 20 }");
        yield return Undef("array_index_out_of_range", "allow if { x := [1]; x[5] == 1 }");
        yield return Allow("non_string_object_keys", "allow if { o := {1: \"one\", [2]: \"two\"}; o[1] == \"one\"; o[[2]] == \"two\" }");
        yield return Allow("computed_collections", "allow if { x := input.a; [x, x] == [1, 1]; {x} == {1}; {\"k\": x} == {\"k\": 1} }", """{"a": 1}""");

        // ---- operators ----
        yield return Allow("precedence", "allow if { 2 + 3 * 4 == 14; (2 + 3) * 4 == 20; 10 - 4 - 3 == 3 }");
        yield return Allow("division_to_float", "allow if 7 / 2 == 3.5");
        yield return Allow("division_exact", "allow if { 6 / 3 == 2; type_name(6 / 3) == \"number\" }");
        yield return Fails("divide_by_zero", "allow if 1 / input.z == 1", """{"z": 0}""", "divide by zero");
        yield return Allow("unary_minus", "allow if { x := 5; -x == -5; -(-3) == 3; 0 - 5 == -5 }");
        yield return Fails("arithmetic_on_string", "allow if input.s + 1 == 2", """{"s": "1"}""", "must be numbers");
        yield return Allow("modulo", "allow if { 7 % 3 == 1; -7 % 3 == -1 }");
        yield return Fails("modulo_on_float", "allow if 7.5 % 2 == 1", null, "modulo");
        yield return Allow("set_difference", "allow if { {1, 2, 3} - {2} == {1, 3} }");
        yield return Allow("ordering", "allow if { \"a\" < \"b\"; 1 <= 1; 2 > 1; 2 >= 2; [1, 2] < [1, 3]; 1 < 1.5 }");
        yield return Allow("ordering_across_types", "allow if { null < false; false < 0; 0 < \"\"; \"z\" < [] }");
        yield return Allow("integer_overflow_to_double", "allow if 9223372036854775807 + 1 > 9223372036854775807");
        yield return Allow("comparison_chain_value", "allow if (1 == 1) == true");

        // ---- built-ins ----
        yield return Allow("count_kinds", "allow if { count(\"héllo\") == 5; count(\"😀\") == 1; count([1, 2]) == 2; count({\"a\": 1}) == 1; count({1}) == 1 }");
        yield return Fails("count_of_number", "allow if count(input.n) == 1", """{"n": 1}""", "count");
        yield return Allow("string_predicates", "allow if { startswith(\"model.w\", \"model.\"); endswith(\"a.bin\", \".bin\"); contains(\"abcdef\", \"cd\"); not contains(\"abc\", \"x\") }");
        yield return Fails("startswith_type_error", "allow if startswith(input.n, \"a\")", """{"n": 1}""", "must be string");
        yield return Allow("lower_upper", "allow if { lower(\"AbC\") == \"abc\"; upper(\"AbC\") == \"ABC\" }");
        yield return Allow("sprintf_verbs", "allow if sprintf(\"%s-%d-%v-%.2f-%%\", [\"a\", 5, [1, \"x\"], 3.14159]) == \"a-5-[1, \\\"x\\\"]-3.14-%\"");
        yield return Allow("sprintf_defaults", "allow if { sprintf(\"%f\", [1.5]) == \"1.500000\"; sprintf(\"%v|%v\", [{2, 1}, {\"k\": \"v\"}]) == \"{1, 2}|{\\\"k\\\": \\\"v\\\"}\"; sprintf(\"%5d|%-3s|\", [42, \"a\"]) == \"   42|a  |\" }");
        yield return Fails("sprintf_missing_argument", "allow if sprintf(\"%s %s\", [\"a\"]) == \"a\"", null, "missing argument");
        yield return Fails("sprintf_d_on_float", "allow if sprintf(\"%d\", [1.5]) == \"1\"", null, "%d");
        yield return Allow("regex_match", "allow if { regex.match(\"^model-[0-9]+$\", \"model-42\"); not regex.match(\"^a\", \"ba\"); regex.match(\"b\", \"abc\") }");
        yield return Allow("regex_named_group_re2_syntax", "allow if regex.match(`^(?P<x>[a-z]+)$`, \"abc\")");
        yield return Fails("regex_invalid_dynamic", "allow if regex.match(input.p, \"x\")", """{"p": "("}""", "regex.match");
        yield return Allow("time_parse_rfc3339", "allow if { time.parse_rfc3339_ns(\"1970-01-01T00:00:01Z\") == 1000000000; time.parse_rfc3339_ns(\"2024-01-01T01:00:00.5+01:00\") == 1704067200500000000 }");
        yield return Fails("time_parse_invalid", "allow if time.parse_rfc3339_ns(\"yesterday\") > 0", null, "RFC 3339");
        yield return Allow("time_now_ns", "allow if { now := time.now_ns(); now > time.parse_rfc3339_ns(\"2020-01-01T00:00:00Z\"); now == time.now_ns() }");
        yield return Allow("semver_compare", "allow if { semver.compare(\"1.2.3\", \"1.10.0\") == -1; semver.compare(\"1.0.0\", \"1.0.0-rc.1\") == 1; semver.compare(\"2.0.0+b\", \"2.0.0\") == 0; semver.compare(\"1.0.0-alpha.2\", \"1.0.0-alpha.10\") == -1; semver.compare(\"1.0.0-alpha\", \"1.0.0-1\") == 1 }");
        yield return Fails("semver_invalid", "allow if semver.compare(\"v1\", \"1.0.0\") == 0", null, "SemVer");
        yield return Allow("semver_is_valid", "allow if { semver.is_valid(\"1.2.3-rc.1+b5\"); not semver.is_valid(\"1.2\"); not semver.is_valid(\"01.2.3\"); not semver.is_valid(3) }");
        yield return Allow("glob_match", "allow if {\n  glob.match(\"*.github.com\", [], \"api.github.com\")\n  not glob.match(\"*.github.com\", [], \"api.cdn.github.com\")\n  glob.match(\"*hub.com\", null, \"api.cdn.github.com\")\n  glob.match(\"api.**.com\", [], \"api.cdn.github.com\")\n  glob.match(\"*:github:com\", [\":\"], \"api:github:com\")\n  glob.match(\"model.{enc,dec}.?\", [\".\"], \"model.enc.1\")\n  glob.match(\"[a-c]x[!0-9]\", null, \"bxz\")\n  not glob.match(\"[a-c]x\", null, \"dx\")\n}");
        yield return Fails("glob_invalid_dynamic", "allow if glob.match(input.p, [], \"x\")", """{"p": "[a"}""", "glob");
        yield return Allow("concat_split_trim", "allow if { concat(\",\", [\"a\", \"b\"]) == \"a,b\"; concat(\"-\", {\"y\", \"x\"}) == \"x-y\"; split(\"a.b.c\", \".\") == [\"a\", \"b\", \"c\"]; trim_space(\"  x \") == \"x\" }");
        yield return Allow("object_get", "allow if { object.get({\"a\": 1}, \"a\", 0) == 1; object.get({\"a\": 1}, \"b\", 0) == 0; object.get({\"a\": {\"b\": 2}}, [\"a\", \"b\"], 0) == 2 }");
        yield return Allow("type_name", "allow if { type_name(null) == \"null\"; type_name(true) == \"boolean\"; type_name(1) == \"number\"; type_name(\"\") == \"string\"; type_name([]) == \"array\"; type_name({}) == \"object\"; type_name(set()) == \"set\" }");
        yield return Allow("aggregates", "allow if { sum([1, 2, 3.5]) == 6.5; max([3, 9, 1]) == 9; min({4, 2}) == 2; abs(-3) == 3; to_number(\"42\") == 42; to_number(\"1.5\") == 1.5; to_number(true) == 1 }");
        yield return Undef("max_of_empty_is_undefined", "allow if max([]) == 0");
        yield return Fails("to_number_invalid", "allow if to_number(\"x\") == 0", null, "to_number");

        // ---- imports ----
        yield return Allow("import_input_alias", "import input.context as ctx\nallow if ctx.env == \"prod\"", """{"context": {"env": "prod"}}""");
        yield return Allow("import_input_default_alias", "import input.user\nallow if user.name == \"al\"", """{"user": {"name": "al"}}""");
        yield return Allow("import_input_and_future_keywords", "import input\nimport future.keywords.in\nimport future.keywords\nallow if \"a\" in input.l", """{"l": ["a"]}""");
        yield return Allow("import_data_rule_alias", "import data.model.is_admin as adm\nis_admin if input.admin\nallow if adm", """{"admin": true}""");
        yield return Allow("import_data_package_alias", "import data.model as m\nok := true\nallow if m.ok");

        // ---- refused policies (full text, exact positions) ----
        yield return Rejected("v0_body_without_if", "package model\nallow { true }", "2:7", "without 'if'");
        yield return Rejected("v0_partial_set_head", "package model\ndeny[msg] { msg := 1 }", "2:5", "partial object");
        yield return Rejected("partial_object_rule", "package model\nimport rego.v1\np[k] := 1 if { k := \"a\" }\nallow = true", "3:2", "partial object");
        yield return Rejected("with_keyword", "package model\nallow if {\n  input.x == 1 with input as {}\n}", "3:16", "'with'");
        yield return Rejected("else_keyword", "package model\nallow if false else := true", "2:16", "'else'");
        yield return Rejected("http_send", "package model\nallow if {\n  r := http.send({\"url\": \"x\"})\n  r.status == 200\n}", "3:8", "http.send");
        yield return Rejected("opa_runtime", "package model\nallow if opa.runtime()", "2:10", "opa.runtime");
        yield return Rejected("unknown_function", "package model\nallow if fooo(1)", "2:10", "unknown built-in function 'fooo'");
        yield return Rejected("unknown_builtin_in_dead_rule", "package model\nallow = true\nunused if trace(\"x\")", "3:11", "trace");
        yield return Rejected("package_not_model", "package other\nallow = true", "1:1", "not a valid rule path");
        yield return Rejected("package_nested", "package model.sub\nallow = true", "1:1", "not a valid rule path");
        yield return Rejected("missing_allow_rule", "package model\nfoo = true", null, "not a valid rule path");
        yield return Rejected("allow_is_a_function", "package model\nallow(x) := true", null, "not a valid rule path");
        yield return Rejected("missing_package", "allow = true", "1:1", "package");
        yield return Rejected("two_packages", "package model\npackage model\nallow = true", "2:1", "package");
        yield return Rejected("array_comprehension", "package model\nallow if {\n  xs := [x | x := 1]\n}", "3:12", "comprehension");
        yield return Rejected("set_union", "package model\nallow if { x := {1} | {2} }", "2:21", "'|'");
        yield return Rejected("unterminated_string", "package model\nallow if \"abc", "2:10", "unterminated");
        yield return Rejected("invalid_escape", "package model\nallow if \"a\\qb\" == \"\"", "2:12", "escape");
        yield return Rejected("unexpected_character", "package model\nallow if input.x @ 1", "2:18", "'@'");
        yield return Rejected("empty_body", "package model\nallow if {}", "2:11", "empty");
        yield return Rejected("missing_closing_brace", "package model\nallow if {\n  true\n", "4:1", "missing '}'");
        yield return Rejected("unexpected_close_paren", "package model\nallow if (1 == 1))", "2:18", "')'");
        yield return Rejected("rule_without_value_or_body", "package model\nallow", "2:1", "neither a value");
        yield return Rejected("operator_starts_new_line", "package model\nallow if {\n  x := 1\n  + 2\n}", "4:3", "'+'");
        yield return Rejected("two_statements_on_one_line", "package model\nallow = true x = 1", "2:14", "new line");
        yield return Rejected("leading_zero_number", "package model\nallow if 01 == 1", "2:10", "leading zero");
        yield return Rejected("keyword_as_variable", "package model\nallow if { in := 1 }", "2:12", "'in'");
        yield return Rejected("recursion", "package model\nimport rego.v1\na if b\nb if a\nallow if a", "4:1", "recursion is not allowed: a -> b -> a");
        yield return Rejected("self_recursive_function", "package model\nimport rego.v1\nf(x) := f(x)\nallow = true", "3:1", "recursion");
        yield return Rejected("multiple_defaults", "package model\ndefault allow := false\ndefault allow := true", "3:9", "multiple default");
        yield return Rejected("default_not_constant", "package model\ndefault allow := input.x", "2:18", "constant");
        yield return Rejected("default_with_body", "package model\ndefault allow := false if true", "2:24", "body");
        yield return Rejected("bare_data", "package model\nallow if data", "2:10", "data");
        yield return Rejected("data_other_package", "package model\nallow if data.other.x", "2:10", "data.model");
        yield return Rejected("data_model_unknown_rule", "package model\nallow if data.model.nope", "2:21", "not defined");
        yield return Rejected("shadow_builtin", "package model\ncount := 1\nallow = true", "2:1", "shadow");
        yield return Rejected("mixed_rule_kinds", "package model\nf(x) := 1\nf := 2\nallow = true", "3:1", "function");
        yield return Rejected("function_arity_mismatch", "package model\nimport rego.v1\nf(x) := x\nallow if f(1, 2) == 1", "4:10", "argument");
        yield return Rejected("builtin_arity_mismatch", "package model\nallow if count(1, 2)", "2:10", "argument");
        yield return Rejected("rule_called_as_function", "package model\nimport rego.v1\nr := 1\nallow if r(1)", "4:10", "not a function");
        yield return Rejected("function_without_call", "package model\nimport rego.v1\nf(x) := x\nallow if f", "4:10", "must be called");
        yield return Rejected("unsafe_variable", "package model\nallow if { y == 1 }", "2:12", "unsafe");
        yield return Rejected("use_before_assignment", "package model\nallow if {\n  x == 1\n  x := 1\n}", "3:3", "unsafe");
        yield return Rejected("reassignment", "package model\nallow if {\n  x := 1\n  x := 2\n}", "4:3", "assigned above");
        yield return Rejected("assign_to_rule_name", "package model\nimport rego.v1\nr := 1\nallow if { r := 2 }", "4:12", "shadow");
        yield return Rejected("destructuring_assignment", "package model\nallow if { [a, b] := [1, 2] }", "2:12", "destructuring");
        yield return Rejected("unsafe_in_composite_unification", "package model\nallow if { [a, 1] = [1, 1] }", "2:13", "unsafe");
        yield return Rejected("invalid_regex_literal", "package model\nallow if regex.match(\"[a-\", \"x\")", "2:22", "regex.match");
        yield return Rejected("regex_lookahead_unsupported", "package model\nallow if regex.match(\"a(?=b)\", \"ab\")", "2:22", "regex.match");
        yield return Rejected("invalid_glob_literal", "package model\nallow if glob.match(\"{a,b\", [], \"a\")", "2:21", "glob");
        yield return Rejected("unsupported_import", "package model\nimport foo.bar\nallow = true", "2:1", "import");
        yield return Rejected("import_alias_conflicts_with_rule", "package model\nimport input.x as allow\nallow = true", "3:1", "alias");
        yield return Rejected("zero_parameter_function", "package model\nf() := 1\nallow = true", "2:3", "parameter");
        yield return Rejected("call_result_reference", "package model\nallow if split(\"a.b\", \".\")[0] == \"a\"", "2:27", "result of a call");
        yield return Rejected("ref_head_rule", "package model\nimport rego.v1\na.b := 1\nallow = true", "3:2", "reference head");

        // ---- bounds ----
        yield return Rejected("ten_thousand_parentheses", "package model\nallow if " + new string('(', 10_000) + "true" + new string(')', 10_000), "2:", "nests deeper");
        yield return Rejected("deeply_nested_arrays", "package model\nallow if " + new string('[', 100) + new string(']', 100) + " != 1", "2:", "nests deeper");
        yield return Rejected("long_operator_chain", "package model\nallow if 0" + string.Concat(Enumerable.Repeat(" + 1", 200)) + " > 0", "2:", "nests deeper");
        yield return Rejected("long_reference_path", "package model\nallow if input" + string.Concat(Enumerable.Repeat(".a", 100)), "2:", "nests deeper");
        yield return Rejected("dependency_chain_too_deep", "package model\nimport rego.v1\n" + string.Concat(Enumerable.Range(0, 40).Select(i => $"r{i} if r{i + 1}\n")) + "r40 = true\nallow if r0", null, "chain");
        yield return Rejected("source_too_large", "package model\nallow = true\n" + new string('#', 1 << 20), null, "larger than");
        yield return Fails("step_limit", "allow if {\n  some a in input.n\n  some b in input.n\n  some c in input.n\n  a + b + c < 0\n}", "{\"n\": [" + string.Join(",", Enumerable.Range(0, 200)) + "]}", "evaluation steps");
        yield return Fails("quadratic_membership_is_charged", "allow if {\n  some t in input.t\n  t in input.t\n  false\n}", "{\"t\": [" + string.Join(",", Enumerable.Range(0, 20_000).Select(i => $"\"tensor.{i}\"")) + "]}", "evaluation steps");
        yield return Fails("dynamic_regex_compilation_is_charged", "allow if {\n  some p in input.p\n  regex.match(p, \"x\")\n  false\n}", "{\"p\": [" + string.Join(",", Enumerable.Range(0, 5000).Select(i => $"\"^a{i}$\"")) + "]}", "evaluation steps");
        yield return Fails("value_nesting_built_by_literals", "allow if {\n  a0 := 1\n" + string.Concat(Enumerable.Range(1, 200).Select(i => $"  a{i} := [a{i - 1}]\n")) + "}", null, "nests deeper");
        yield return Fails("input_too_deep", "allow = true", new string('[', 100) + new string(']', 100), "nests deeper");
    }

    [TestCaseSource(nameof(Cases))]
    public void Case(RegoCase c)
    {
        using var doc = c.Input is null ? null : JsonDocument.Parse(c.Input, new JsonDocumentOptions { MaxDepth = 1000 });
        JsonElement? input = doc?.RootElement;

        if (c.Expected == Expect.Unsupported)
        {
            var ex = Assert.Throws<PolicyDeniedException>(() => PolicyEngine.Compile(c.Policy));
            Assert.That(ex.Code, Is.EqualTo(ErrorCode.PolicyUnsupported), ex.Message);
            Assert.That(ex.Kind, Is.EqualTo(ErrorKind.Policy));
            if (c.Position is not null) Assert.That(ex.Message, Does.Contain($"at {c.Position}"), "position");
            if (c.MessagePart is not null) Assert.That(ex.Message, Does.Contain(c.MessagePart));
            return;
        }

        var policy = PolicyEngine.Compile(c.Policy);
        switch (c.Expected)
        {
            case Expect.Allow:
                Assert.That(policy.Evaluate(input), Is.EqualTo(PolicyDecision.Allow));
                Assert.DoesNotThrow(() => PolicyEngine.EnsureAllowed(c.Policy, input));
                break;
            case Expect.Deny:
                Assert.That(policy.Evaluate(input), Is.EqualTo(PolicyDecision.Deny));
                AssertCode(() => PolicyEngine.EnsureAllowed(c.Policy, input), ErrorCode.PolicyDenied, null);
                break;
            case Expect.Undefined:
                Assert.That(policy.Evaluate(input), Is.EqualTo(PolicyDecision.Undefined));
                AssertCode(() => PolicyEngine.EnsureAllowed(c.Policy, input), ErrorCode.PolicyUndefined, null);
                break;
            case Expect.NotBoolean:
                AssertCode(() => policy.Evaluate(input), ErrorCode.PolicyNotBoolean, null);
                AssertCode(() => PolicyEngine.EnsureAllowed(c.Policy, input), ErrorCode.PolicyNotBoolean, null);
                break;
            case Expect.EvalFailed:
                AssertCode(() => policy.Evaluate(input), ErrorCode.PolicyEvaluationFailed, c.MessagePart);
                break;
        }
    }

    private static void AssertCode(TestDelegate action, ErrorCode code, string? messagePart)
    {
        var ex = Assert.Throws<PolicyDeniedException>(action);
        Assert.That(ex.Code, Is.EqualTo(code), ex.Message);
        if (messagePart is not null) Assert.That(ex.Message, Does.Contain(messagePart));
    }

    [Test]
    public void TableHasAtLeastEightyDistinctCases()
    {
        var names = All().Select(c => c.Name).ToList();
        Assert.That(names, Has.Count.GreaterThanOrEqualTo(80));
        Assert.That(names, Is.Unique);
    }
}
