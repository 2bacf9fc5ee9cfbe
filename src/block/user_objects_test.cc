// The --object registry: QEMU 7.2's property checks and messages for TLS credentials, and
// the lookups the NBD server and client make by id.
#include "qblock/user_objects.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "base/test_macros.h"

namespace qblock {
namespace {

class UserObjectsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/qblock-objects-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    for (const char* name : {"ca-cert.pem", "server-cert.pem", "server-key.pem"}) {
      std::ofstream(dir_ + "/" + name) << "x\n";
    }
    std::ofstream(dir_ + "/keys.psk") << "alice:0011\nqemu:2233\n";
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string message(std::string_view definition) {
    Status s = registry_.add(definition);
    return s ? std::string("ok") : s.error().message();
  }

  std::string dir_;
  ObjectRegistry registry_;
};

TEST_F(UserObjectsTest, CreatesX509AndPskCredentials) {
  ASSERT_OK(registry_.add("tls-creds-x509,id=s,dir=" + dir_ + ",endpoint=server"));
  ASSERT_OK(registry_.add("tls-creds-x509,id=c,dir=" + dir_ + ",verify-peer=off"));
  ASSERT_OK(registry_.add("tls-creds-psk,id=p,dir=" + dir_ + ",endpoint=client,username=alice"));
  ASSERT_OK(registry_.add("{\"qom-type\":\"tls-creds-psk\",\"id\":\"q\",\"dir\":\"" + dir_ +
                          "\",\"endpoint\":\"server\",\"verify-peer\":false}"));
  Result<const TlsCredsObject*> s = registry_.tls_creds("s", TlsEndpoint::kServer);
  ASSERT_OK(s);
  EXPECT_EQ((*s)->type, TlsCredsType::kX509);
  EXPECT_TRUE((*s)->verify_peer);
  Result<const TlsCredsObject*> c = registry_.tls_creds("c", TlsEndpoint::kClient);
  ASSERT_OK(c);
  EXPECT_FALSE((*c)->verify_peer);
  Result<const TlsCredsObject*> p = registry_.tls_creds("p", TlsEndpoint::kClient);
  ASSERT_OK(p);
  EXPECT_EQ((*p)->username, "alice");
  EXPECT_EQ((*p)->psk_file(), dir_ + "/keys.psk");
  ASSERT_OK(registry_.tls_creds("q", TlsEndpoint::kServer));
}

TEST_F(UserObjectsTest, AuthzObjectsJudgeIdentities) {
  ASSERT_OK(registry_.add("authz-simple,id=s,identity=CN=a,,O=b"));
  ASSERT_OK(registry_.add(R"({"qom-type":"authz-list","id":"l","policy":"allow","rules":[)"
                          R"({"match":"CN=bad*","policy":"deny","format":"glob"},)"
                          R"({"match":"CN=?ood","policy":"allow","format":"glob"},)"
                          R"({"match":"CN=*","policy":"deny","format":"exact"}]})"));
  ASSERT_OK(
      registry_.add("authz-list,id=k,rules.1.match=x,rules.1.policy=allow,"
                    "rules.0.match=y*,rules.0.policy=allow,rules.0.format=glob"));
  Result<const AuthzObject*> simple = registry_.authz("s");
  ASSERT_OK(simple);
  EXPECT_TRUE((*simple)->allows("CN=a,O=b"));
  EXPECT_FALSE((*simple)->allows("CN=a"));
  Result<const AuthzObject*> list = registry_.authz("l");
  ASSERT_OK(list);
  EXPECT_FALSE((*list)->allows("CN=badger"));
  EXPECT_TRUE((*list)->allows("CN=good"));
  EXPECT_TRUE((*list)->allows("CN=wood"));
  EXPECT_FALSE((*list)->allows("CN=*"));      // exact: only the literal text
  EXPECT_TRUE((*list)->allows("CN=anyone"));  // no rule: the policy
  Result<const AuthzObject*> keys = registry_.authz("k");
  ASSERT_OK(keys);
  EXPECT_TRUE((*keys)->allows("x"));
  EXPECT_TRUE((*keys)->allows("yes"));
  EXPECT_FALSE((*keys)->allows("z"));  // authz-list's default policy is deny
  EXPECT_EQ(registry_.authz("nosuch").error().message(), "Cannot find QAuthZ object ID nosuch");
  EXPECT_EQ(registry_.tls_creds("s", TlsEndpoint::kServer).error().message(),
            "Object with id 's' is not TLS credentials");
  EXPECT_EQ(message("authz-simple,id=e"), "Parameter 'identity' is missing");
  EXPECT_EQ(message(R"({"qom-type":"authz-list","id":"e","rules":[{"policy":"allow"}]})"),
            "Parameter 'rules[0].match' is missing");
  EXPECT_EQ(message("authz-list,id=e,rules.0.match=x,rules.0.policy=allow,rules.0.format=re"),
            "Parameter 'format' does not accept value 're'");
  EXPECT_EQ(message("authz-pam,id=e,service=x"), "invalid object type: authz-pam");
}

TEST_F(UserObjectsTest, PropertyErrorsAreQemus) {
  EXPECT_EQ(message("id=x"), "Parameter 'qom-type' is missing");
  EXPECT_EQ(message("bogus,id=x"), "Parameter 'qom-type' does not accept value 'bogus'");
  EXPECT_EQ(message("tls-creds-x509,dir=" + dir_), "Parameter 'id' is missing");
  EXPECT_EQ(message("tls-creds-x509,id=t,dir=" + dir_ + ",bogus=1"),
            "Parameter 'bogus' is unexpected");
  EXPECT_EQ(message("tls-creds-x509,id=t,dir=" + dir_ + ",endpoint=x"),
            "Parameter 'endpoint' does not accept value 'x'");
  EXPECT_EQ(message("tls-creds-x509,id=t,dir=" + dir_ + ",verify-peer=maybe"),
            "Parameter 'verify-peer' expects 'on' or 'off'");
  EXPECT_EQ(message("tls-creds-x509,id=t,endpoint=server"), "Missing 'dir' property value");
  EXPECT_EQ(message("tls-creds-x509,id=t,endpoint=server,dir=/nonexistent"),
            "Unable to access credentials /nonexistent/ca-cert.pem: No such file or directory");
  EXPECT_EQ(message("tls-creds-psk,id=t,endpoint=client,dir=" + dir_ + ",username=bob"),
            "Username bob not found in PSK file " + dir_ + "/keys.psk");
  EXPECT_EQ(message("secret,id=t,data=x"), "ok");
  EXPECT_EQ(message("secret,id=t,data=x"),
            "attempt to add duplicate property 't' to object (type 'container')");
}

// --object iothread on the command line (key=value text): qemu-storage-daemon 7.2's words.
// The QMP (JSON) forms are in tests/qmp/objects.qmp, compared with the daemon itself.
TEST_F(UserObjectsTest, IothreadPropertiesAreCheckedAsQemus) {
  EXPECT_EQ(message("iothread,id=a,poll-max-ns=0x10,poll-grow=2,poll-shrink=2,aio-max-batch=1,"
                    "thread-pool-min=1,thread-pool-max=4"),
            "ok");
  EXPECT_TRUE(registry_.is_iothread("a"));
  EXPECT_EQ(message("iothread,id=b,bogus=1"), "Parameter 'bogus' is unexpected");
  EXPECT_EQ(message("iothread,id=b,poll-max-ns=x"), "Parameter 'poll-max-ns' expects integer");
  EXPECT_EQ(message("iothread,id=b,aio-max-batch=1k"), "Parameter 'aio-max-batch' expects integer");
  EXPECT_EQ(message("iothread,id=b,poll-max-ns="), "Parameter 'poll-max-ns' expects integer");
  EXPECT_EQ(message("iothread,id=b,poll-max-ns=99999999999999999999"),
            "Parameter 'poll-max-ns' expects integer");
  EXPECT_EQ(message("iothread,id=b,poll-grow=-1"),
            "poll-grow value must be in range [0, 9223372036854775807]");
  EXPECT_EQ(message("iothread,id=b,thread-pool-min=5,thread-pool-max=2"),
            "bad thread-pool-min/thread-pool-max values");
  EXPECT_EQ(message("iothread,id=b,thread-pool-max=0"),
            "bad thread-pool-min/thread-pool-max values");
  EXPECT_EQ(message("iothread,id=1a"),
            "Parameter 'id' expects an identifier\nIdentifiers consist of letters, digits, "
            "'-', '.', '_', starting with a letter.");
  EXPECT_EQ(message("secret,id=1a"),
            "Parameter 'id' expects an identifier\nIdentifiers consist of letters, digits, "
            "'-', '.', '_', starting with a letter.");
  EXPECT_FALSE(registry_.is_iothread("b"));
}

TEST_F(UserObjectsTest, RemoveFreesTheId) {
  ASSERT_OK(registry_.add("secret,id=s,data=x"));
  ASSERT_OK(registry_.add("iothread,id=io"));
  ASSERT_OK(registry_.add("tls-creds-x509,id=c,dir=" + dir_ + ",endpoint=client"));
  Result<const TlsCredsObject*> creds = registry_.tls_creds("c", TlsEndpoint::kClient);
  ASSERT_TRUE(creds.has_value());
  for (const char* id : {"s", "io", "c"}) ASSERT_OK(registry_.remove(id));
  EXPECT_EQ((*creds)->id, "c");  // still allocated for whoever holds it
  EXPECT_FALSE(registry_.contains("s"));
  EXPECT_FALSE(registry_.is_iothread("io"));
  EXPECT_EQ(registry_.remove("s").error().message(), "object 's' not found");
  EXPECT_EQ(message("secret,id=s,data=y"), "ok");
}

TEST_F(UserObjectsTest, ServerNeedsItsCertificateAndKey) {
  std::filesystem::remove(dir_ + "/server-key.pem");
  EXPECT_EQ(message("tls-creds-x509,id=t,endpoint=server,dir=" + dir_),
            "Unable to access credentials " + dir_ + "/server-key.pem: No such file or directory");
  EXPECT_EQ(message("tls-creds-x509,id=t,endpoint=client,dir=" + dir_), "ok");
}

TEST_F(UserObjectsTest, LookupErrorsAreQemus) {
  ASSERT_OK(registry_.add("tls-creds-x509,id=c,dir=" + dir_ + ",endpoint=client"));
  ASSERT_OK(registry_.add("secret,id=sec,data=x"));
  auto why = [this](std::string_view id, TlsEndpoint endpoint) {
    Result<const TlsCredsObject*> r = registry_.tls_creds(id, endpoint);
    return r ? std::string("ok") : r.error().message();
  };
  EXPECT_EQ(why("nope", TlsEndpoint::kClient), "No TLS credentials with id 'nope'");
  EXPECT_EQ(why("sec", TlsEndpoint::kClient), "Object with id 'sec' is not TLS credentials");
  EXPECT_EQ(why("c", TlsEndpoint::kServer), "Expected TLS credentials for a server endpoint");
  EXPECT_EQ(why("c", TlsEndpoint::kClient), "ok");
}

}  // namespace
}  // namespace qblock
