#include "exemptd/mdm_import.hpp"

#include <catch2/catch.hpp>

#include <string>

using Catch::Matchers::Contains;
using exemptd::chunk_csv;
using exemptd::parse_mdm_csv;

namespace {

// Requires a refusal with `status`, `code` and a message containing `needle`.
template <class R>
void check_refused(R const& result, int status, std::string const& code, std::string const& needle)
{
    REQUIRE_FALSE(result.has_value());
    CHECK(result.error().status == status);
    CHECK(result.error().code == code);
    CHECK_THAT(result.error().message, Contains(needle));
}

}  // namespace

TEST_CASE("An MDM export is read with RFC 4180 quoting and defaults", "[import]")
{
    auto const rows = parse_mdm_csv("\xEF\xBB\xBF" "device_id,enrolled,owner,source\r\n"
                                    "LAPTOP-0001,true,sam@example.com,jamf\r\n"
                                    "\"LAPTOP-0002\",NO,,\r\n"
                                    "\r\n"
                                    "LAPTOP-0003,1,\"jordan@example.com\",\"mdm, \"\"nightly\"\" export\"\r\n"
                                    "LAPTOP-0004,yes,,intune");
    REQUIRE(rows.has_value());
    REQUIRE(rows->size() == 4);
    CHECK((*rows)[0].device_id == "LAPTOP-0001");
    CHECK((*rows)[0].enrolled);
    CHECK((*rows)[0].owner == "sam@example.com");
    CHECK((*rows)[0].source == "jamf");
    CHECK((*rows)[0].line == 2);
    CHECK_FALSE((*rows)[1].enrolled);
    CHECK((*rows)[1].owner.empty());
    CHECK((*rows)[1].source == "mdm-import");
    CHECK((*rows)[2].line == 5);  // after the blank line
    CHECK((*rows)[2].source == "mdm, \"nightly\" export");
    CHECK((*rows)[3].line == 6);
    CHECK((*rows)[3].source == "intune");
}

TEST_CASE("The header may order, case and omit the optional columns", "[import]")
{
    auto const rows = parse_mdm_csv("Enrolled, DEVICE_ID\nfalse,DESKTOP-1\n");
    REQUIRE(rows.has_value());
    REQUIRE(rows->size() == 1);
    CHECK((*rows)[0].device_id == "DESKTOP-1");
    CHECK_FALSE((*rows)[0].enrolled);
    CHECK((*rows)[0].source == "mdm-import");
    auto const only_header = parse_mdm_csv("device_id,enrolled,owner,source\n");
    REQUIRE(only_header.has_value());
    CHECK(only_header->empty());
}

TEST_CASE("A file without a usable header is refused as invalid_csv", "[import]")
{
    check_refused(parse_mdm_csv(""), 400, "invalid_csv", "header");
    check_refused(parse_mdm_csv("LAPTOP-1,true\n"), 400, "invalid_csv", "unknown column");
    check_refused(parse_mdm_csv("device_id,owner\nLAPTOP-1,sam@example.com\n"), 400, "invalid_csv", "enrolled");
    check_refused(parse_mdm_csv("device_id,enrolled,enrolled\n"), 400, "invalid_csv", "twice");
}

TEST_CASE("A syntax error names its line and refuses the file", "[import]")
{
    check_refused(parse_mdm_csv("device_id,enrolled\nA,true\nB,true,extra\n"), 400, "invalid_csv", "line 3");
    check_refused(parse_mdm_csv("device_id,enrolled\nA,true\n\"B,true\n"), 400, "invalid_csv", "not closed");
    check_refused(parse_mdm_csv("device_id,enrolled\nA,true\nB\"x,true\n"), 400, "invalid_csv", "line 3");
    check_refused(parse_mdm_csv("device_id,enrolled\n\"A\"x,true\n"), 400, "invalid_csv", "line 2");
}

TEST_CASE("A quoted line break counts in the line numbers of later rows", "[import]")
{
    // Control characters are refused in a source, but the refusal must name the right line.
    check_refused(parse_mdm_csv("device_id,enrolled,source\nA,true,\"two\nlines\"\nB,true,x\n"), 422, "invalid_row",
                  "line 2");
    check_refused(parse_mdm_csv("device_id,enrolled,source\n\"A\",true,\"\"\n\"B\nC\",true,x\nbad id,true,\n"), 422,
                  "invalid_row", "line 3");
}

TEST_CASE("A row that breaks a rule refuses the file with invalid_row and its line", "[import]")
{
    std::string const header = "device_id,enrolled,owner,source\n";
    check_refused(parse_mdm_csv(header + "OK-1,true,,\nnot valid,true,,\n"), 422, "invalid_row", "line 3");
    check_refused(parse_mdm_csv(header + ",true,,\n"), 422, "invalid_row", "device id");
    check_refused(parse_mdm_csv(header + std::string(65, 'A') + ",true,,\n"), 422, "invalid_row", "device id");
    check_refused(parse_mdm_csv(header + "OK-1,maybe,,\n"), 422, "invalid_row", "enrolled");
    check_refused(parse_mdm_csv(header + "OK-1,true,sam,\n"), 422, "invalid_row", "owner");
    check_refused(parse_mdm_csv(header + "OK-1,true,,\"a\tb\"\n"), 422, "invalid_row", "source");
    check_refused(parse_mdm_csv(header + "OK-1,true,," + std::string(65, 's') + "\n"), 422, "invalid_row", "source");
}

TEST_CASE("A device listed twice is refused at its second line", "[import]")
{
    check_refused(parse_mdm_csv("device_id,enrolled\nA,true\nB,true\nC,true\nB,false\nA,false\n"), 422, "invalid_row",
                  "line 5: device B is listed twice (first on line 3)");
}

TEST_CASE("More rows than the limit are refused with 413", "[import]")
{
    check_refused(parse_mdm_csv("device_id,enrolled\nA,true\nB,true\nC,true\n", 2), 413, "too_many_rows", "line 4");
    CHECK(parse_mdm_csv("device_id,enrolled\nA,true\nB,true\n", 2).has_value());
}

TEST_CASE("A file is split into CSVs of a few rows, each with the header", "[import]")
{
    auto const chunks = chunk_csv("device_id,enrolled,source\r\nA,true,x\r\nB,true,\"two\nlines\"\r\n\r\nC,false,y", 2);
    REQUIRE(chunks.has_value());
    REQUIRE(chunks->size() == 2);
    CHECK((*chunks)[0].text == "device_id,enrolled,source\r\nA,true,x\r\nB,true,\"two\nlines\"\r\n");
    CHECK((*chunks)[0].rows == 2);
    CHECK((*chunks)[0].first_line == 2);
    CHECK((*chunks)[0].last_line == 3);
    CHECK((*chunks)[1].text == "device_id,enrolled,source\r\nC,false,y\n");
    CHECK((*chunks)[1].first_line == 6);
    CHECK(parse_mdm_csv((*chunks)[1].text).has_value());
    check_refused(chunk_csv("device_id,enrolled\n\"A,true\n", 2), 400, "invalid_csv", "not closed");
    auto const empty = chunk_csv("device_id,enrolled\n", 2);
    REQUIRE(empty.has_value());
    CHECK(empty->empty());
}
