#include "fixtures.hpp"
#include "posture_parsers.hpp"

#include <catch2/catch.hpp>

using namespace exemptd::client;
using exemptd::client::test::fixture;
using exemptd::client::test::ScratchDir;

TEST_CASE("os-release gives the distribution id and version", "[posture]")
{
    SECTION("the Debian 12 file") {
        auto const os = parse_os_release(fixture("os-release-debian"));
        CHECK(os.id == "debian");
        CHECK(os.version_id == "12");
    }
    SECTION("single quotes, escapes, comments and blanks") {
        auto const os = parse_os_release("# a comment\n\nID='ubuntu'\nVERSION_ID=\"24.04 \\\"noble\\\"\"\nIDX=1\n");
        CHECK(os.id == "ubuntu");
        CHECK(os.version_id == "24.04 \"noble\"");
    }
    SECTION("unquoted values and a missing version") {
        auto const os = parse_os_release("ID=arch\nBUILD_ID=rolling");
        CHECK(os.id == "arch");
        CHECK(os.version_id.empty());
    }
}

TEST_CASE("mountinfo yields the device of the root file system", "[posture]")
{
    SECTION("ext4 on LVM: the device numbers of the root line") {
        auto const root = find_root_mount(fixture("mountinfo-lvm-on-luks"));
        REQUIRE(root);
        CHECK(root->major == 253);
        CHECK(root->minor == 1);
        CHECK(root->fstype == "ext4");
        CHECK(root->source == "/dev/mapper/vg0-root");
    }
    SECTION("btrfs has an anonymous device, so the source names the block device") {
        auto const root = find_root_mount(fixture("mountinfo-btrfs"));
        REQUIRE(root);
        CHECK(root->major == 0);
        CHECK(root->source == "/dev/mapper/luks-3f2a");
    }
    SECTION("a container's overlay root has no block device") {
        auto const root = find_root_mount(fixture("mountinfo-container"));
        REQUIRE(root);
        CHECK(root->major == 0);
        CHECK(root->source == "overlay");
    }
    SECTION("a later mount on / hides an earlier one") {
        auto const root = find_root_mount("1 0 8:1 / / rw - ext4 /dev/sda1 rw\n"
                                          "2 1 253:0 / / rw shared:5 - ext4 /dev/mapper/root rw\n");
        REQUIRE(root);
        CHECK(root->major == 253);
        CHECK(root->minor == 0);
    }
    SECTION("octal escapes are decoded") {
        auto const root = find_root_mount("7 1 253:2 / / rw - ext4 /dev/mapper/data\\040vol rw\n");
        REQUIRE(root);
        CHECK(root->source == "/dev/mapper/data vol");
    }
    SECTION("no root line, or a malformed one") {
        CHECK_FALSE(find_root_mount("23 22 0:21 / /sys rw - sysfs sysfs rw\n"));
        CHECK_FALSE(find_root_mount("22 1 253:1 / / rw shared:1\n"));
        CHECK_FALSE(find_root_mount("22 1 x:1 / / rw - ext4 /dev/sda1 rw\n"));
        CHECK_FALSE(find_root_mount(""));
    }
}

TEST_CASE("a dm uuid names dm-crypt when it starts with CRYPT-", "[posture]")
{
    CHECK(is_crypt_uuid("CRYPT-LUKS2-3f2a9c4e1b7d4e0f9a8b7c6d5e4f3a2b-luks-3f2a"));
    CHECK(is_crypt_uuid("CRYPT-PLAIN-swap"));
    CHECK_FALSE(is_crypt_uuid("LVM-Xy12abcdefghijklmnopqrstuvwxyz0123456789"));
    CHECK_FALSE(is_crypt_uuid("crypt-luks2-lowercase"));
    CHECK_FALSE(is_crypt_uuid(""));
}

TEST_CASE("dm-crypt is found through the device's slaves", "[posture]")
{
    ScratchDir sys;
    auto const dev = [&sys](std::string const& name) { return sys.path() / "dev" / "block" / name; };

    SECTION("LUKS directly under the file system") {
        sys.write("dev/block/253:0/dm/uuid", "CRYPT-LUKS2-abc-luks-abc\n");
        CHECK(is_dm_crypt_backed(dev("253:0")) == true);
    }
    SECTION("LVM on LUKS: the logical volume's only slave is dm-crypt") {
        sys.write("dev/block/253:1/dm/uuid", "LVM-abcdef\n");
        sys.write("dev/block/253:1/slaves/dm-0/dm/uuid", "CRYPT-LUKS2-abc-nvme0n1p3_crypt\n");
        sys.write("dev/block/253:1/slaves/dm-0/slaves/nvme0n1p3/dev", "259:3\n");
        CHECK(is_dm_crypt_backed(dev("253:1")) == true);
    }
    SECTION("LVM across an encrypted and a plain disk is not encrypted") {
        sys.write("dev/block/253:1/dm/uuid", "LVM-abcdef\n");
        sys.write("dev/block/253:1/slaves/dm-0/dm/uuid", "CRYPT-LUKS2-abc-sda2_crypt\n");
        sys.write("dev/block/253:1/slaves/sdb1/dev", "8:17\n");
        CHECK(is_dm_crypt_backed(dev("253:1")) == false);
    }
    SECTION("a plain partition") {
        sys.write("dev/block/8:2/partition", "2\n");
        CHECK(is_dm_crypt_backed(dev("8:2")) == false);
    }
    SECTION("a device that sysfs does not know") {
        CHECK_FALSE(is_dm_crypt_backed(dev("9:9")).has_value());
    }
}

TEST_CASE("an nft ruleset filters input only with input rules or a drop policy", "[posture][firewall]")
{
    CHECK_FALSE(nft_ruleset_filters_input(fixture("nft-debian-default")));
    CHECK(nft_ruleset_filters_input(fixture("nft-input-rules")));
    CHECK_FALSE(nft_ruleset_filters_input(fixture("nft-docker-only")));
    CHECK(nft_ruleset_filters_input("table ip filter {\n\tchain INPUT {\n\t\ttype filter hook input priority "
                                    "filter; policy drop;\n\t}\n}\n"));
    CHECK_FALSE(nft_ruleset_filters_input(""));
}

TEST_CASE("iptables-save output filters input with an INPUT rule or a DROP policy", "[posture][firewall]")
{
    std::string const docker = "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n"
                               "-A FORWARD -j DOCKER-USER\nCOMMIT\n";
    CHECK_FALSE(iptables_save_filters_input(docker));
    CHECK(iptables_save_filters_input("*filter\n:INPUT DROP [0:0]\nCOMMIT\n"));
    CHECK(iptables_save_filters_input("*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -i lo -j ACCEPT\nCOMMIT\n"));
    CHECK_FALSE(iptables_save_filters_input("*nat\n:INPUT ACCEPT [0:0]\n-A INPUT -j RETURN\nCOMMIT\n"));
}

TEST_CASE("gsettings answers give the screen lock delay", "[posture]")
{
    CHECK(parse_gsettings_uint("uint32 300\n") == 300);
    CHECK(parse_gsettings_uint("0") == 0);
    CHECK_FALSE(parse_gsettings_uint("GLib-GIO-Message: Using the 'memory' GSettings backend.\nuint32 300\n"));
    CHECK_FALSE(parse_gsettings_uint("No such schema \"org.gnome.desktop.session\"\n"));
    CHECK(parse_gsettings_bool("true\n") == true);
    CHECK(parse_gsettings_bool("false") == false);
    CHECK_FALSE(parse_gsettings_bool("yes"));

    CHECK(screen_lock_after(300, true, 30) == 330);
    CHECK(screen_lock_after(300, true, std::nullopt) == 300);
    CHECK_FALSE(screen_lock_after(300, false, 0));         // locking is off: never locks
    CHECK_FALSE(screen_lock_after(0, true, 0));            // never idle: never locks
    CHECK_FALSE(screen_lock_after(std::nullopt, true, 0)); // cannot tell
    CHECK_FALSE(screen_lock_after(300, std::nullopt, 0));
}

TEST_CASE("dpkg.log gives the time of the last package upgrade", "[posture]")
{
    using namespace std::chrono;
    auto const upgraded = last_dpkg_upgrade(fixture("dpkg.log"));
    REQUIRE(upgraded);
    CHECK(*upgraded == local_days{2026y / November / 20} + 10h);
    CHECK_FALSE(last_dpkg_upgrade("2026-11-15 14:00:00 install htop:amd64 <none> 3.2.2-2\n"));
    CHECK_FALSE(last_dpkg_upgrade("2026-13-40 10:00:00 upgrade openssl:amd64 1 2\n"));
    CHECK_FALSE(last_dpkg_upgrade(""));
}

TEST_CASE("patch age counts whole days and never goes negative", "[posture]")
{
    using namespace std::chrono;
    exemptd::TimePoint const t0{sys_days{2026y / November / 20} + 10h};
    CHECK(patch_age_days(t0, t0) == 0);
    CHECK(patch_age_days(t0, t0 + 23h + 59min) == 0);
    CHECK(patch_age_days(t0, t0 + 24h) == 1);
    CHECK(patch_age_days(t0, t0 + days{12} + 1h) == 12);
    CHECK(patch_age_days(t0 + 1h, t0) == 0);
}

TEST_CASE("firmware placeholder serial numbers are not reported", "[posture]")
{
    CHECK(clean_serial("C02XYZ123\n") == "C02XYZ123");
    CHECK(clean_serial("  PF3ABC12 ") == "PF3ABC12");
    CHECK_FALSE(clean_serial("To Be Filled By O.E.M.\n"));
    CHECK_FALSE(clean_serial("Default string"));
    CHECK_FALSE(clean_serial("System Serial Number"));
    CHECK_FALSE(clean_serial("0"));
    CHECK_FALSE(clean_serial("\n"));
}
