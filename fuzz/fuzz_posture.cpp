// Fuzz target: the check-in JSON decoder (decode_posture) and the posture codecs around it.
// Invariants: a refusal is a 400 with a known code; an accepted report obeys the documented field
// rules and survives encode_posture -> decode_posture and facts_to_json -> facts_from_json unchanged.

#include "fuzz_support.hpp"

#include "exemptd/identity.hpp"
#include "exemptd/posture.hpp"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <variant>

namespace {

using exemptd::fuzz::fail;

// Boost.JSON 1.81 does not parse every decimal to the nearest double (1.83 added
// number_precision::precise), so a real fact may come back a few ULPs off after serialisation;
// everything else must come back exactly.
bool same_fact(exemptd::FactValue const& a, exemptd::FactValue const& b)
{
    auto const* x = std::get_if<double>(&a);
    auto const* y = std::get_if<double>(&b);
    if (x == nullptr || y == nullptr) return a == b;
    return *x == *y || std::fabs(*x - *y) <= 1e-14 * std::max(std::fabs(*x), std::fabs(*y));
}

bool same_facts(exemptd::Facts const& a, exemptd::Facts const& b)
{
    return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](auto const& l, auto const& r) {
               return l.first == r.first && same_fact(l.second, r.second);
           });
}

void check_accepted(exemptd::PostureReport const& report)
{
    if (!exemptd::is_valid_device_id(report.device_id)) fail("accepted an invalid device_id");
    if (report.nonce.size() < 8 || report.nonce.size() > 128) fail("accepted a nonce of the wrong length");
    if (report.facts.size() > 64) fail("accepted more than 64 facts");

    auto const again = exemptd::decode_posture(exemptd::encode_posture(report));
    if (!again) fail("an encoded report does not decode: " + again.error().message);
    if (again->device_id != report.device_id || again->hostname != report.hostname || again->serial != report.serial ||
        again->os_name != report.os_name || again->os_version != report.os_version ||
        again->agent_version != report.agent_version || again->reported_at != report.reported_at ||
        again->nonce != report.nonce || !same_facts(again->facts, report.facts))
        fail("encode_posture -> decode_posture changed the report");
    if (!same_facts(exemptd::facts_from_json(exemptd::facts_to_json(report.facts)), report.facts))
        fail("facts_to_json -> facts_from_json changed the facts");
    for (auto const& [name, value] : report.facts) (void)exemptd::fact_to_string(value);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(std::uint8_t const* data, std::size_t size)
{
    auto const text = exemptd::fuzz::as_text(data, size);
    auto const report = exemptd::decode_posture(text);
    if (report) {
        check_accepted(*report);
    } else {
        auto const& e = report.error();
        if (e.status != 400 || (e.code != "malformed_json" && e.code != "invalid_field") || e.message.empty())
            fail("unexpected refusal " + std::to_string(e.status) + " " + e.code);
    }
    (void)exemptd::facts_from_json(text);  // the store's reader of stored facts
    return 0;
}
