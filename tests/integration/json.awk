# Flattens one JSON document into lines "PATH<TAB>LITERAL", one per scalar, in document order:
#   {"a": {"b": [1, "x"]}, "c": {}}   ->   .a.b[0]  1  /  .a.b[1]  "x"  /  .c  {}
# Strings keep their quotes and escapes; empty objects and arrays print as {} and []; a scalar
# document has the path ".". Exits 2, naming the byte, when the input is not one JSON value.
# POSIX awk only (Debian's mawk), so the tests need no jq or python.

{ doc = doc $0 "\n" }

END {
    n = length(doc)
    pos = 1
    if (!parse_value("")) fail()
    ws()
    if (pos <= n) fail()
}

function fail() {
    printf "json: not a JSON document (byte %d)\n", pos > "/dev/stderr"
    exit 2
}

function ws(   c) {
    while (pos <= n) {
        c = substr(doc, pos, 1)
        if (c != " " && c != "\t" && c != "\n" && c != "\r") break
        pos++
    }
}

function emit(path, lit) {
    print (path == "" ? "." : path) "\t" lit
}

function parse_value(path,   c, start, lit) {
    ws()
    if (pos > n) return 0
    c = substr(doc, pos, 1)
    if (c == "{") return parse_object(path)
    if (c == "[") return parse_array(path)
    if (c == "\"") {
        lit = parse_string()
        if (lit == "") return 0
        emit(path, lit)
        return 1
    }
    start = pos
    while (pos <= n && index("+-.0123456789eEtrufalsn", substr(doc, pos, 1))) pos++
    lit = substr(doc, start, pos - start)
    if (lit !~ /^(true|false|null|-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)?)$/) return 0
    emit(path, lit)
    return 1
}

# The string literal at pos, quotes included, or "" when it is not a valid one.
function parse_string(   start, c) {
    start = pos
    pos++
    while (pos <= n) {
        c = substr(doc, pos, 1)
        if (c == "\\") {
            if (!index("\"\\/bfnrtu", substr(doc, pos + 1, 1))) return ""
            pos += 2
            continue
        }
        if (c == "\"") {
            pos++
            return substr(doc, start, pos - start)
        }
        if (c == "\n" || c == "\t" || c == "\r") return ""
        pos++
    }
    return ""
}

function parse_object(path,   key, c) {
    pos++
    ws()
    if (substr(doc, pos, 1) == "}") {
        pos++
        emit(path, "{}")
        return 1
    }
    while (1) {
        ws()
        if (substr(doc, pos, 1) != "\"") return 0
        key = parse_string()
        if (key == "") return 0
        ws()
        if (substr(doc, pos, 1) != ":") return 0
        pos++
        if (!parse_value(path "." substr(key, 2, length(key) - 2))) return 0
        ws()
        c = substr(doc, pos, 1)
        pos++
        if (c == "}") return 1
        if (c != ",") return 0
    }
}

function parse_array(path,   i, c) {
    pos++
    ws()
    if (substr(doc, pos, 1) == "]") {
        pos++
        emit(path, "[]")
        return 1
    }
    for (i = 0; ; i++) {
        if (!parse_value(path "[" i "]")) return 0
        ws()
        c = substr(doc, pos, 1)
        pos++
        if (c == "]") return 1
        if (c != ",") return 0
    }
}
