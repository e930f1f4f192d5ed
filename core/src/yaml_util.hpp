#pragma once
// Strict YAML reading shared by the configuration and policy loaders (private to core).

#include <yaml-cpp/yaml.h>

#include <initializer_list>
#include <string>
#include <string_view>

namespace exemptd::yaml {

// A refusal raised while walking a YAML tree; the loader turns it into a LoadError.
struct Refusal {
    int line;
    std::string reason;
};

// The 1-based line of `node`, 0 when unknown.
[[nodiscard]] int line_of(YAML::Node const& node);

// Throws Refusal at `node`'s line.
[[noreturn]] void refuse(YAML::Node const& node, std::string reason);

// Refuses a node that is not a mapping, and keys of it that are not in `known`.
void expect_keys(YAML::Node const& map, std::string_view what, std::initializer_list<std::string_view> known);

// The text of a scalar; refuses sequences and mappings.
[[nodiscard]] std::string scalar(YAML::Node const& node, std::string_view what);

// A whole number within [lo, hi].
[[nodiscard]] long long integer(YAML::Node const& node, std::string_view what, long long lo, long long hi);

}  // namespace exemptd::yaml
