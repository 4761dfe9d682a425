// `mpirun -np N ftune data tokenize` against the single-process run: inputs of uneven sizes
// (one large file cut by byte ranges that fall inside multi-byte characters, gzip, zstd, an
// empty file, bad records), every rank count gives the same documents, masks and attributes in
// the same order (h5py oracle) and `data verify` passes; runs interrupted by SIGINT to every
// rank or by SIGKILL of one rank resume with another rank count to the same set; refusals.
#include <gtest/gtest.h>

#include <random>

#include "tests/support/test_support.h"

namespace ftune::test {
namespace {

std::string mpirun(int np) {
  return "OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 mpirun --oversubscribe --bind-to none -np " +
         std::to_string(np) + " ";
}

// Alpaca records, some with multi-byte text; a malformed line at 700 and a missing field at
// 2900 (under on_error=skip both runs must name the same file:line).
std::string big_corpus() {
  std::mt19937 rng(7);
  const char* words[] = {"the", "quick", "brown", "fox", "Ünïcödé", "漢字", "🙂", "capital", "France", "answer"};
  std::string text;
  for (int line = 1; line <= 3200; ++line) {
    if (line == 700) {
      text += "{\"instruction\": \"broken\n";
      continue;
    }
    if (line == 2900) {
      text += "{\"question\": \"no instruction field\"}\n";
      continue;
    }
    std::string a, b;
    for (int w = 0; w < 3 + static_cast<int>(rng() % 12); ++w) a += std::string(words[rng() % 10]) + " ";
    for (int w = 0; w < 1 + static_cast<int>(rng() % 6); ++w) b += std::string(words[rng() % 10]) + " ";
    text += "{\"instruction\": \"" + std::to_string(line) + " " + a + "\", \"output\": \"" + b + "\"}\n";
  }
  return text;
}

std::string small_corpus(int n, const std::string& tag) {
  std::string text;
  for (int i = 0; i < n; ++i) {
    text += "{\"instruction\": \"" + tag + " " + std::to_string(i) + "\", \"input\": \"2+" + std::to_string(i) +
            "\", \"output\": \"" + std::to_string(2 + i) + "\"}\n";
  }
  return text;
}

class TokenizeMpi : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    d_ = new TempDir;
    auto r = run_oracle("pipeline_make_tokenizer.py", d_->file("tok") + " llama3");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    const std::string big = big_corpus();
    write_file(d_->file("big.jsonl"), big);
    write_file(d_->file("small.jsonl"), small_corpus(3, "small"));
    write_file(d_->file("mid.jsonl"), small_corpus(900, "mid"));
    write_file(d_->file("z.jsonl"), small_corpus(300, "zstd"));
    write_file(d_->file("empty.jsonl"), "");
    ASSERT_EQ(run_shell("cd " + d_->path() + " && gzip mid.jsonl && zstd -q --rm z.jsonl").exit_code, 0);
    // Items of about 40 kB whose first cut falls inside a multi-byte character.
    size_t cut = 40000;
    while ((static_cast<unsigned char>(big[cut]) & 0xC0) != 0x80) ++cut;
    item_bytes_ = std::to_string(cut);
    inputs_ = d_->file("big.jsonl") + " " + d_->file("small.jsonl") + " " + d_->file("mid.jsonl.gz") + " " +
              d_->file("empty.jsonl") + " " + d_->file("z.jsonl.zst");
    // The reference: one process, no mpirun, one item per file.
    ref_log_ = run_ftune(args("ref", "") + " 2>&1").output;
    ASSERT_NE(ref_log_.find("-> "), std::string::npos) << ref_log_;
  }
  static void TearDownTestSuite() {
    delete d_;
    d_ = nullptr;
  }

  static std::string args(const std::string& out, const std::string& extra) {
    return "data tokenize --inputs " + inputs_ + " --output " + d_->file(out) + " --tokenizer " + d_->file("tok") +
           " --format instruction --preset alpaca --on-error skip --threads 1 " + extra;
  }
  // The job under mpirun with small items and shards; np 0: one process without mpirun.
  static std::string job(int np, const std::string& out, const std::string& extra = "") {
    return (np > 0 ? mpirun(np) : "") + shell_quote(ftune_binary()) + " " +
           args(out, "--item-bytes " + item_bytes_ + " --tokens-per-shard 3000 " + extra);
  }
  static void expect_same_as_ref(const std::vector<std::string>& outs) {
    std::string dirs;
    for (const auto& o : outs) dirs += " " + d_->file(o);
    auto r = run_oracle("tokenize_sets.py", d_->file("ref") + dirs);
    EXPECT_EQ(r.exit_code, 0) << r.output;
    for (const auto& o : outs) {
      EXPECT_NE(r.output.find("OK " + d_->file(o) + " "), std::string::npos) << r.output;
      auto v = run_ftune("data verify " + d_->file(o) + " 2>&1");
      EXPECT_EQ(v.exit_code, 0) << v.output;
    }
  }
  // Starts a slowed job in the background, waits for `records` finished items, signals.
  static ProcessResult interrupted(int np, const std::string& out, int records, const std::string& how) {
    return run_shell("rm -rf " + d_->file(out) + "; FTUNE_FAULT_ITEM_DELAY_MS=120 " + job(np, out) + " > " +
                     d_->file(out + ".log") + " 2>&1 & mp=$!; "
                     "for i in $(seq 500); do [ $(ls " + d_->file(out + "/manifest") +
                     " 2>/dev/null | grep -c '^item-') -ge " + std::to_string(records) +
                     " ] && break; sleep 0.02; done; ranks=$(pgrep -P $mp); " + how +
                     "; wait $mp; echo rc=$?; cat " + d_->file(out + ".log"));
  }
  // "5 file(s), 4403 record(s) -> 4401 documents, 151498 tokens (79.53% masked)": the totals,
  // without the shard count (shard boundaries differ).
  static std::string summary_line(const std::string& log) {
    auto at = log.find("file(s), ");
    return at == std::string::npos ? "" : log.substr(at, log.find(" masked)", at) - at);
  }

  static TempDir* d_;
  static std::string item_bytes_, inputs_, ref_log_;
};
TempDir* TokenizeMpi::d_ = nullptr;
std::string TokenizeMpi::item_bytes_, TokenizeMpi::inputs_, TokenizeMpi::ref_log_;

TEST_F(TokenizeMpi, EveryRankCountGivesTheSingleProcessSet) {
  for (int np : {1, 2, 3}) {
    auto r = run_shell(job(np, "np" + std::to_string(np)) + " 2>&1");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    // Totals (records, documents, tokens, masked fraction) summed over the ranks, and the
    // skipped records named by file:line in the whole file, not in a rank's range.
    EXPECT_EQ(summary_line(r.output), summary_line(ref_log_)) << r.output;
    EXPECT_NE(r.output.find("skipped 2 record(s): malformed_json 1, missing_field 1"), std::string::npos) << r.output;
    EXPECT_NE(r.output.find("big.jsonl:700: "), std::string::npos) << r.output;
    EXPECT_NE(r.output.find("big.jsonl:2900: "), std::string::npos) << r.output;
    if (np > 1) EXPECT_NE(r.output.find(std::to_string(np) + " rank(s) x 1 encoder thread(s)"), std::string::npos);
  }
  EXPECT_NE(ref_log_.find("big.jsonl:700: "), std::string::npos) << ref_log_;
  expect_same_as_ref({"np1", "np2", "np3"});
  // The set is the same for any rank count, shard for shard: same items, same cuts.
  EXPECT_EQ(run_shell("cd " + d_->path() + " && diff np2/index.json np3/index.json").exit_code, 0);
  EXPECT_GT(std::stoi(run_shell("ls " + d_->file("np3/manifest") + " | wc -l").output), 8);
  // The one large file spread over all three ranks (its items are 0-7).
  auto ranks = run_shell("cd " + d_->file("np3/manifest") + " && cat item-00000[0-7].json | grep -o '\"rank\":[0-9]*' "
                         "| sort -u | wc -l");
  EXPECT_EQ(ranks.output, "3\n") << ranks.output;
}

TEST_F(TokenizeMpi, SigintToEveryRankThenResumeWithAnotherRankCount) {
  std::mt19937 rng(std::random_device{}());
  const int records = 1 + static_cast<int>(rng() % 6);  // a random point of the run
  SCOPED_TRACE("interrupted after " + std::to_string(records) + " finished item(s)");
  auto r = interrupted(2, "int", records, "for p in $ranks; do kill -INT $p; done");
  EXPECT_EQ(r.output.find("rc=0"), std::string::npos) << r.output;
  // The ranks whose signal came before the tick that stopped them (all, unless one was already
  // waiting in that tick).
  EXPECT_NE(r.output.find("interrupted by signal 2 on rank "), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("rerun with --resume"), std::string::npos) << r.output;
  EXPECT_NE(run_shell("test -e " + d_->file("int/index.json")).exit_code, 0);
  EXPECT_NE(run_shell("test -e " + d_->file("int/.lock")).exit_code, 0);  // released on the way out
  EXPECT_EQ(run_shell("ls -a " + d_->file("int") + " | grep -c tmp").output, "0\n");
  auto resumed = run_shell(job(3, "int", "--resume") + " 2>&1");
  ASSERT_EQ(resumed.exit_code, 0) << resumed.output;
  EXPECT_NE(resumed.output.find("[data] resuming " + d_->file("int") + ": "), std::string::npos) << resumed.output;
  EXPECT_EQ(summary_line(resumed.output), summary_line(ref_log_)) << resumed.output;
  expect_same_as_ref({"int"});
}

TEST_F(TokenizeMpi, AKilledRankEndsTheJobAndResumePicksUp) {
  std::mt19937 rng(std::random_device{}());
  const int victim = static_cast<int>(rng() % 3);
  SCOPED_TRACE("SIGKILL to rank process " + std::to_string(victim));
  auto r = interrupted(3, "kill", 2, "kill -KILL $(echo $ranks | cut -d' ' -f" + std::to_string(victim + 1) + ")");
  EXPECT_EQ(r.output.find("rc=0"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("exited on signal 9"), std::string::npos) << r.output;  // mpirun names the rank
  EXPECT_NE(run_shell("test -e " + d_->file("kill/index.json")).exit_code, 0);
  auto resumed = run_shell(job(2, "kill", "--resume") + " 2>&1");
  ASSERT_EQ(resumed.exit_code, 0) << resumed.output;
  expect_same_as_ref({"kill"});
}

// As under srun without --kill-on-bad-exit: mpirun lets the survivors run, and their next tick
// times out (step timeout 2 s) naming the dead rank, instead of a final barrier waiting forever.
TEST_F(TokenizeMpi, AKilledRankIsNamedWhenTheLauncherLetsTheOthersRun) {
  const std::string out = d_->file("gone");
  auto r = run_shell("rm -rf " + out + "; FTUNE_FAULT_ITEM_DELAY_MS=120 OMPI_MCA_orte_abort_on_non_zero_status=0 " +
                     job(3, "gone", "--comm.step_timeout_s 2") + " > " + out + ".log 2>&1 & mp=$!; "
                     "for i in $(seq 500); do [ $(ls " + out + "/manifest 2>/dev/null | grep -c '^item-') -ge 2 ] && "
                     "break; sleep 0.02; done; kill -KILL $(pgrep -P $mp | tail -1); s=$(date +%s); wait $mp; "
                     "echo rc=$? took=$(( $(date +%s) - s )); cat " + out + ".log");
  EXPECT_EQ(r.output.find("rc=0"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("(step phase timeout)"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("process gone"), std::string::npos) << r.output;
  const auto took = std::atoi(r.output.substr(r.output.find("took=") + 5).c_str());
  EXPECT_LT(took, 15) << r.output;
  auto resumed = run_shell(job(0, "gone", "--resume") + " 2>&1");
  ASSERT_EQ(resumed.exit_code, 0) << resumed.output;
  expect_same_as_ref({"gone"});
}

// A finished set made to look interrupted (its index and two records gone): a resume with
// another template or max_tokens is refused naming the setting, a run without --resume is
// refused naming --resume, the right resume completes it.
TEST_F(TokenizeMpi, ResumeWithChangedSettingsIsRefusedWithTheReason) {
  ASSERT_EQ(run_shell(job(2, "chg") + " > /dev/null 2>&1").exit_code, 0);
  ASSERT_EQ(run_shell("cd " + d_->file("chg") + " && rm index.json manifest/item-000001.json manifest/item-000004.json")
                .exit_code, 0);
  auto r = run_shell(job(2, "chg", "--resume --instruction-template 'Q: {prompt} A: {response}'") + " 2>&1");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("cannot resume " + d_->file("chg") + ": this run's settings differ"), std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find("instruction_template: 'USER: {prompt}\nASSISTANT: {response}' when the run began, "
                          "'Q: {prompt} A: {response}' now"), std::string::npos) << r.output;
  r = run_shell(job(0, "chg", "--resume --max-tokens 5") + " 2>&1");
  EXPECT_NE(r.output.find("max_tokens: '0' when the run began, '5' now"), std::string::npos) << r.output;
  r = run_shell(job(0, "chg") + " 2>&1");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("holds an interrupted run (manifest.json, no index.json): rerun with --resume"),
            std::string::npos) << r.output;
  // A record whose counts disagree with its shard (edited, or from another set).
  const std::string rec = d_->file("chg/manifest/item-000002.json");
  const std::string saved = read_file(rec);
  std::string edited = saved;
  const auto at = edited.find("\"documents\":");
  ASSERT_NE(at, std::string::npos) << saved;
  edited.insert(at + 12, "1");  // the item's total: 57 -> 157 documents
  write_file(rec, edited);
  r = run_shell(job(0, "chg", "--resume") + " 2>&1");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("the manifest does not match the shards: manifest/item-000002.json counts 1"),
            std::string::npos) << r.output;
  write_file(rec, saved);
  r = run_shell(job(3, "chg", "--resume") + " 2>&1");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("resuming " + d_->file("chg") + ": "), std::string::npos) << r.output;
  expect_same_as_ref({"chg"});
  r = run_shell(job(0, "chg", "--resume") + " 2>&1");  // a requeued job after the end
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("is already complete (index.json); nothing to do"), std::string::npos) << r.output;
}

TEST_F(TokenizeMpi, AnotherRunsDirectoryIsRefusedNamingTheLockHolder) {
  const std::string out = d_->file("locked");
  auto r = run_shell("rm -rf " + out + "; FTUNE_FAULT_ITEM_DELAY_MS=1000 " + job(2, "locked") + " > " + out +
                     ".log 2>&1 & mp=$!; for i in $(seq 300); do [ -e " + out +
                     "/.lock ] && break; sleep 0.02; done; " + job(2, "locked") + " 2>&1; echo rc=$?; "
                     "echo \"ranks= $(pgrep -P $mp | tr '\\n' ' ')\"; kill -TERM $(pgrep -P $mp); wait $mp; cat " +
                     out + ".log");
  // SIGTERM (Slurm's end of a job) stops the first run as SIGINT does.
  EXPECT_NE(r.output.find("interrupted by signal 15 on rank "), std::string::npos) << r.output;
  const std::string says = "is being written by another run: pid ";
  auto at = r.output.find(says);
  ASSERT_NE(at, std::string::npos) << r.output;
  const std::string pid = r.output.substr(at + says.size(), r.output.find(' ', at + says.size()) - at - says.size());
  EXPECT_NE(r.output.find("ranks= "), std::string::npos) << r.output;
  EXPECT_NE(r.output.substr(r.output.find("ranks= ")).find(" " + pid + " "), std::string::npos)
      << "the lock names pid " << pid << ", not a rank of the first run:\n" << r.output;
  EXPECT_EQ(r.output.find("rc=0"), std::string::npos) << r.output;
}

TEST_F(TokenizeMpi, BadInputsAreRefusedNamingFileAndRank) {
  auto r = run_shell(mpirun(2) + shell_quote(ftune_binary()) + " data tokenize --inputs " + d_->file("small.jsonl") +
                     " " + d_->file("*.jsonl") + " --output " + d_->file("twice") + " --tokenizer " + d_->file("tok") +
                     " 2>&1");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("small.jsonl is listed twice"), std::string::npos) << r.output;
  // An input one rank cannot see (here: another command line for rank 1, as a node without
  // the file system would): the message names that rank and its host.
  const std::string ok = shell_quote(ftune_binary()) + " " + args("onenode", "");
  r = run_shell("OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 mpirun --oversubscribe -np 1 " + ok +
                " : -np 1 " + shell_quote(ftune_binary()) + " data tokenize --inputs " + d_->file("gone.jsonl") +
                " --output " + d_->file("onenode") + " --tokenizer " + d_->file("tok") + " 2>&1");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("[rank 1 on "), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("gone.jsonl' matches no file"), std::string::npos) << r.output;
}

}  // namespace
}  // namespace ftune::test
