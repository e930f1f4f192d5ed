#include "output.hpp"

#include <catch2/catch.hpp>

using namespace exemptd;
using namespace exemptd::client;

namespace {

ControlResult fail(std::string id, std::string reason, std::string covered_by = {})
{
    ControlResult c;
    c.id = std::move(id);
    c.reason = std::move(reason);
    c.covered_by = std::move(covered_by);
    return c;
}

ControlResult pass(std::string id)
{
    ControlResult c;
    c.id = std::move(id);
    c.pass = true;
    return c;
}

}  // namespace

TEST_CASE("A table pads columns to the widest cell without trailing spaces", "[output]")
{
    Table table({"DEVICE", "OWNER", "DECISION"});
    table.add_row({"LAPTOP-0042", "sam@example.com", "allow"});
    table.add_row({"PC-1", "-", "deny"});
    CHECK(table.render() == "DEVICE       OWNER            DECISION\n"
                            "LAPTOP-0042  sam@example.com  allow\n"
                            "PC-1         -                deny\n");

    SECTION("short rows get empty cells and long rows are cut") {
        Table t({"A", "B"});
        t.add_row({"x"});
        t.add_row({"y", "z", "ignored"});
        CHECK(t.render() == "A  B\nx\ny  z\n");
    }
    SECTION("an empty table is its header") {
        CHECK(Table({"DEVICE", "STATE"}).render() == "DEVICE  STATE\n");
    }
}

TEST_CASE("Controls read as one line each, with coverage and grace", "[output]")
{
    std::vector<ControlResult> controls{fail("MDM-01", "device is not enrolled in MDM", "EX-000007"), pass("ENC-01"),
                                        fail("OS-01", "os_patch_age_days is 45, above 30")};
    ControlResult grace = fail("FW-001", "firewall is off");
    grace.grace_until = parse_rfc3339("2026-11-30T21:00:00Z");
    controls.push_back(grace);
    CHECK(format_controls(controls) == "MDM-01  fail  device is not enrolled in MDM  (covered by EX-000007)\n"
                                       "ENC-01  pass\n"
                                       "OS-01   fail  os_patch_age_days is 45, above 30\n"
                                       "FW-001  fail  firewall is off  (grace until 2026-11-30T21:00:00Z)\n");
    CHECK(format_controls({pass("A")}, "  ") == "  A  pass\n");
    CHECK(format_controls({}).empty());
}

TEST_CASE("A decision reads as decision, basis, then its controls", "[output]")
{
    Decision d;
    d.device_id = "LAPTOP-0042";
    d.allow = true;
    d.basis = Basis::exempted;
    d.controls = {fail("MDM-01", "device is not enrolled in MDM", "EX-000007"), pass("ENC-01")};
    CHECK(format_decision(d) == "decision: allow\n"
                                "basis:    exempted\n"
                                "MDM-01  fail  device is not enrolled in MDM  (covered by EX-000007)\n"
                                "ENC-01  pass\n");
    d.allow = false;
    d.basis = Basis::noncompliant;
    d.controls = {fail("ENC-01", "")};
    CHECK(format_decision(d) == "decision: deny\nbasis:    noncompliant\nENC-01  fail\n");
}

TEST_CASE("CSV cells are quoted only when they must be, with quotes doubled", "[output]")
{
    CHECK(csv_row({"plain", "", "2026-11-29T10:00:00Z"}) == "plain,,2026-11-29T10:00:00Z\r\n");
    CHECK(csv_row({"a,b", "say \"hi\"", "two\nlines", "cr\rhere"}) ==
          "\"a,b\",\"say \"\"hi\"\"\",\"two\nlines\",\"cr\rhere\"\r\n");
    CHECK(csv_row({"{\"k\":1}"}) == "\"{\"\"k\"\":1}\"\r\n");
}

TEST_CASE("A CSV cell a spreadsheet would run as a formula is shown as text", "[output]")
{
    CHECK(csv_row({"=HYPERLINK(\"http://x\",\"y\")"}) == "\"'=HYPERLINK(\"\"http://x\"\",\"\"y\"\")\"\r\n");
    CHECK(csv_row({"+cmd|' /C calc'!A0", "-2+3", "@SUM(A1:A2)"}) ==
          "\"'+cmd|' /C calc'!A0\",\"'-2+3\",\"'@SUM(A1:A2)\"\r\n");
    CHECK(csv_row({"\t=1", "\r=1"}) == "\"'\t=1\",\"'\r=1\"\r\n");
    // Only the first character counts: these are plain text.
    CHECK(csv_row({"a=b", "CHG-1234", "x@example.com"}) == "a=b,CHG-1234,x@example.com\r\n");
}
