// The fine-tuning methods beyond LoRA (runtime/peft): NF4 against a reference written in the
// oracle script, adapters PEFT writes loading into ftune with PEFT's logits, and DoRA, IA3 and
// QLoRA trained under mpirun, exported, and reproduced by PEFT.
#include <filesystem>

#include <ATen/CPUGeneratorImpl.h>

#include "runtime/generate.h"
#include "runtime/peft/bnb4bit.h"
#include "runtime/peft/dora.h"
#include "runtime/peft/methods.h"
#include "runtime/peft/qlora.h"
#include "tests/runtime/train_test_util.h"

namespace ftune::test {
namespace {

using model::testing::error_of;

at::Tensor normal_weights(std::vector<int64_t> shape, uint64_t seed) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  return at::empty(shape, at::kFloat).normal_(0.0, 1.0, gen);
}

// Quantise then dequantise equals the oracle's reference NF4 to the last bit: the level
// indices, the decoded absmax and the weights, with and without double quantisation (whose
// 300 absmax values leave a partial nested block).
TEST(Nf4, RoundTripEqualsTheReferenceBitForBit) {
  TempDir tmp;
  at::Tensor w = normal_weights({150, 128}, 1) * 0.02;
  st::write_file(tmp.file("w.safetensors"), {{"w", st::DType::F32, {150, 128}, w.data_ptr()}});
  for (bool dq : {false, true}) {
    auto r = run_oracle("peft_oracle.py", "nf4 " + shell_quote(tmp.file("w.safetensors")) + " " +
                                              shell_quote(tmp.file("ref.safetensors")) + " 64 " + (dq ? "1" : "0"));
    ASSERT_EQ(r.exit_code, 0) << r.output;
    peft::Nf4Tensor q = peft::quantize_nf4(w, {64, dq});
    at::Tensor idx = at::stack({q.packed.__rshift__(4), q.packed.bitwise_and(15)}, 1).reshape({-1});
    EXPECT_TRUE(at::equal(idx, read_tensor(tmp.file("ref.safetensors"), "idx"))) << "dq " << dq;
    EXPECT_TRUE(at::equal(peft::nf4_absmax(q), read_tensor(tmp.file("ref.safetensors"), "absmax"))) << "dq " << dq;
    EXPECT_TRUE(at::equal(peft::dequantize_nf4(q), read_tensor(tmp.file("ref.safetensors"), "deq"))) << "dq " << dq;
    EXPECT_EQ(q.absmax.scalar_type(), dq ? at::kByte : at::kFloat);
  }
}

// On N(0, 1) weights NF4 with blocks of 64 errs by about 0.07 on average (bitsandbytes' own
// test bounds the mean absolute error by 0.083); double quantisation adds almost nothing.
TEST(Nf4, ErrorOnNormalWeightsIsInThePublishedRange) {
  at::Tensor w = normal_weights({1024, 1024}, 2);
  for (bool dq : {false, true}) {
    at::Tensor deq = peft::dequantize_nf4(peft::quantize_nf4(w, {64, dq}));
    const double mae = (deq - w).abs().mean().item<double>();
    const double rel = ((deq - w).abs() / w.abs().clamp_min(1e-3)).median().item<double>();
    std::printf("[nf4] N(0,1), block 64, double quant %d: mean |error| %.4f, median relative error %.4f\n",
                int(dq), mae, rel);
    EXPECT_LT(mae, 0.083);
    EXPECT_GT(mae, 0.04) << "16 levels cannot do better";
  }
}

// The bytes an NF4 tensor holds are the formula `model info --quant nf4` uses.
TEST(Nf4, BytesAreTheFormula) {
  for (bool dq : {false, true}) {
    peft::Nf4Tensor q = peft::quantize_nf4(normal_weights({96, 64 * 300}, 3), {64, dq});
    EXPECT_EQ(double(q.bytes()), peft::nf4_bytes(96 * 64 * 300, {64, dq}));
  }
  EXPECT_NEAR(peft::nf4_bytes(int64_t(1) << 30, {64, true}) / double(int64_t(1) << 30), 0.5 + 1.0 / 64, 1e-3);
}

TEST(Nf4, ABlockThatDoesNotDivideIsNamed) {
  EXPECT_NE(error_of([] { peft::quantize_nf4(at::zeros({3, 10}), {64, true}); }).find("set qlora.block"),
            std::string::npos);
}

class PeftMethods : public TrainE2E {
 protected:
  std::shared_ptr<model::CausalLM> base() {
    return model::load_model(tmp_.file("base"), at::TensorOptions(at::kFloat));
  }

  // ftune's logits of ids() with the adapter in dir, as load_adapter attaches it.
  at::Tensor logits_with(const std::string& dir, bool merge = false) {
    auto m = base();
    peft::load_adapter(*m, dir);
    if (merge) EXPECT_GT(peft::merge_adapters(*m), 0u);
    at::NoGradGuard no_grad;
    return m->forward(ids());
  }

  std::string peft_logits(const std::string& adapter, const std::string& name, const std::string& nf4 = "") {
    const std::string out = tmp_.file(name + ".safetensors");
    auto r = run_oracle("peft_oracle.py", "logits " + shell_quote(tmp_.file("base")) + " " + shell_quote(adapter) +
                                              " " + shell_quote(tmp_.file("ids.safetensors")) + " " + shell_quote(out) +
                                              (nf4.empty() ? "" : " " + nf4));
    EXPECT_EQ(r.exit_code, 0) << r.output;
    return out;
  }

  // ftune merge writes a model whose logits are the adapter's.
  void expect_merge_matches(const std::string& adapter, const at::Tensor& want, const std::string& name) {
    auto r = run_ftune("merge --model " + shell_quote(tmp_.file("base")) + " --adapter " + shell_quote(adapter) +
                       " --out " + shell_quote(tmp_.file(name)) + " --dtype float32");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    auto merged = model::load_model(tmp_.file(name), at::TensorOptions(at::kFloat));
    at::NoGradGuard no_grad;
    const double diff = max_abs_diff(merged->forward(ids()), want);
    std::printf("[peft] %s merged: max |logit diff| %.3g\n", name.c_str(), diff);
    EXPECT_LT(diff, 1e-4) << name;
  }

  // Trains `method` for a few steps on 2 ranks; PEFT loads the export and gives ftune's logits
  // and greedy ids; merge (when the method merges) gives them too.
  void train_and_check(const std::string& method, const std::string& extra) {
    const std::string out = train(method, "--data.global_batch 4 --data.val_fraction 0 --train.steps 4 "
                                          "--optim.lr 2e-2 " + extra);
    const std::string adapter = out + "/final";
    write_ids(tmp_.file("ids.safetensors"));
    const std::string ref = peft_logits(adapter, method);
    auto m = base();
    const peft::AdapterSpec spec = peft::load_adapter(*m, adapter);
    EXPECT_EQ(spec.method, method);
    at::NoGradGuard no_grad;
    const at::Tensor got = m->forward(ids());
    const double diff = max_abs_diff(got, read_tensor(ref, "logits"));
    const at::Tensor base_logits = base()->forward(ids());
    const double moved = max_abs_diff(got, base_logits);
    std::printf("[peft] %s trained: max |logit diff| vs PEFT %.3g (the adapter moved logits by %.3g)\n",
                method.c_str(), diff, moved);
    EXPECT_LT(diff, 1e-4);
    EXPECT_GT(moved, 1e-3) << "the adapter changes the model";
    expect_same_greedy("--model " + shell_quote(tmp_.file("base")) + " --adapter " + shell_quote(adapter), ref);
    if (method != "prefix") return expect_merge_matches(adapter, read_tensor(ref, "logits"), method + "-merged");
    auto r = run_ftune("merge --model " + shell_quote(tmp_.file("base")) + " --adapter " + shell_quote(adapter) +
                       " --out " + shell_quote(tmp_.file("merged")));
    EXPECT_NE(r.exit_code, 0);
    EXPECT_NE(r.output.find("prefix tuning cannot be merged: its virtual keys and values"), std::string::npos)
        << r.output;
  }
};

// PEFT creates LoRA, DoRA, IA3, rank/alpha-pattern and prefix-tuning adapters (moved away from their identity start) and saves
// them; ftune loads each with PEFT's logits, generates PEFT's greedy ids, and merges it.
TEST_F(PeftMethods, AdaptersPeftWroteLoadWithPeftsLogits) {
  write_ids(tmp_.file("ids.safetensors"));
  auto r = run_oracle("peft_oracle.py", "make " + shell_quote(tmp_.file("base")) + " " + shell_quote(tmp_.file("peft")) +
                                            " " + shell_quote(tmp_.file("ids.safetensors")));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  at::Tensor base_logits;
  {
    at::NoGradGuard no_grad;
    base_logits = base()->forward(ids());
  }
  for (const std::string kind : {"lora", "dora", "ia3", "patterns", "prefix"}) {
    const std::string dir = tmp_.file("peft/" + kind), ref = tmp_.file("peft/" + kind + ".safetensors");
    EXPECT_GT(max_abs_diff(read_tensor(ref, "logits"), base_logits), 1e-2) << kind << ": the adapter is no identity";
    const double diff = max_abs_diff(logits_with(dir), read_tensor(ref, "logits"));
    std::printf("[peft] %s written by PEFT: max |logit diff| %.3g\n", kind.c_str(), diff);
    EXPECT_LT(diff, 1e-4) << kind;
    expect_same_greedy("--model " + shell_quote(tmp_.file("base")) + " --adapter " + shell_quote(dir), ref);
    if (kind == "prefix") continue;  // cannot merge: TrainsAndPeftReproducesIt checks the refusal
    EXPECT_LT(max_abs_diff(logits_with(dir, /*merge=*/true), read_tensor(ref, "logits")), 1e-4) << kind << " merged";
  }
}

// `train --adapter DIR` continues an adapter PEFT wrote: its per-module ranks and alphas (not
// the [lora] defaults) train and are exported, PEFT loads the export with ftune's logits.
TEST_F(PeftMethods, TrainingContinuesFromAPeftAdapterWithPatterns) {
  write_ids(tmp_.file("ids.safetensors"));
  auto r = run_oracle("peft_oracle.py", "make " + shell_quote(tmp_.file("base")) + " " + shell_quote(tmp_.file("peft")) +
                                            " " + shell_quote(tmp_.file("ids.safetensors")));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const std::string start = tmp_.file("peft/patterns");
  const std::string out = train("lora", "--data.global_batch 4 --data.val_fraction 0 --train.steps 2 --optim.lr 1e-2 "
                                        "--adapter " + shell_quote(start));
  const std::string adapter = out + "/final";
  std::ifstream in(adapter + "/adapter_config.json");
  const auto c = nlohmann::ordered_json::parse(in);
  // PEFT writes its config with sorted keys and matches patterns in the order it reads them.
  EXPECT_EQ(c["rank_pattern"].dump(), R"({"down_proj":6,"layers.0.self_attn.q_proj":3,"q_proj":2})");
  EXPECT_EQ(c["alpha_pattern"]["v_proj"].get<double>(), 20.0);
  const std::string q0 = "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight";
  const at::Tensor trained = read_tensor(adapter + "/adapter_model.safetensors", q0);
  EXPECT_EQ(trained.sizes(), (std::vector<int64_t>{3, 64})) << "the first matching key's rank";
  EXPECT_EQ(read_tensor(adapter + "/adapter_model.safetensors",
                        "base_model.model.model.layers.1.self_attn.q_proj.lora_A.weight").size(0), 2);
  const at::Tensor before = read_tensor(start + "/adapter_model.safetensors", q0);
  const double moved = max_abs_diff(trained, before);
  EXPECT_GT(moved, 1e-5) << "it trained";
  EXPECT_LT(moved, 0.1) << "from PEFT's weights, not from a fresh start";
  const std::string ref = peft_logits(adapter, "continued");
  const double diff = max_abs_diff(logits_with(adapter), read_tensor(ref, "logits"));
  std::printf("[peft] continued from PEFT's adapter with patterns: max |logit diff| vs PEFT %.3g\n", diff);
  EXPECT_LT(diff, 1e-4);
}

TEST_F(PeftMethods, DoraTrainsAndPeftReproducesIt) {
  train_and_check("dora", "--lora.r 4 --lora.target_modules q_proj v_proj down_proj");
}

TEST_F(PeftMethods, Ia3TrainsAndPeftReproducesIt) { train_and_check("ia3", ""); }

// Prefix tuning: PEFT's past_key_values layout, positions after the virtual tokens, greedy
// generation with the prefix in the KV cache; merge is refused with the reason.
TEST_F(PeftMethods, PrefixTrainsAndPeftReproducesIt) { train_and_check("prefix", "--prefix.num_virtual_tokens 6"); }

// QLoRA: the base quantised to NF4 at load, LoRA trained on top under mpirun; PEFT on a base
// dequantised by the oracle's reference NF4 gives ftune's logits and greedy ids, and the model
// holds about the bytes `model info --quant nf4` reports.
TEST_F(PeftMethods, QloraTrainsAndPeftOnTheReferenceNf4ReproducesIt) {
  const std::string out = train("qlora", "--data.global_batch 4 --data.val_fraction 0 --train.steps 4 "
                                         "--optim.lr 2e-2 --lora.r 4 --lora.target_modules all-linear");
  write_ids(tmp_.file("ids.safetensors"));
  const std::string ref = peft_logits(out + "/final", "qlora", "64 1");
  const at::Tensor b = read_tensor(out + "/final/adapter_model.safetensors",
                                   "base_model.model.model.layers.0.mlp.down_proj.lora_B.weight");
  EXPECT_GT(b.abs().max().item<double>(), 1e-4) << "lora_B trained away from zero";
  auto m = base();
  peft::AdapterSpec spec;
  spec.method = "qlora";
  spec.lora.r = 4;
  spec.lora.target_modules = {"all-linear"};
  peft::attach_adapters(*m, spec, 0);
  peft::load_adapter_tensors(*m, out + "/final", "r = 4");
  at::NoGradGuard no_grad;
  const double diff = max_abs_diff(m->forward(ids()), read_tensor(ref, "logits"));
  std::printf("[peft] qlora trained: max |logit diff| vs PEFT on reference NF4 %.3g\n", diff);
  EXPECT_LT(diff, 1e-4);
  at::Tensor prompt = ids().narrow(1, 0, 5)[0];
  std::vector<int64_t> p(prompt.data_ptr<int64_t>(), prompt.data_ptr<int64_t>() + 5);
  at::Tensor want = read_tensor(ref, "greedy");
  EXPECT_EQ(model::generate(*m, p, 16, {}, m->config().eos_token_ids),
            std::vector<int64_t>(want.data_ptr<int64_t>(), want.data_ptr<int64_t>() + want.numel()));
  EXPECT_NE(error_of([&] { peft::merge_adapters(*m); }).find("cannot merge into a 4-bit base"), std::string::npos);

  // Memory: the model's tensors (less the adapters) against `model info --quant nf4`.
  int64_t adapters = 0;
  for (const auto& item : m->named_parameters())
    if (item.key().find(".lora.") != std::string::npos) adapters += item.value().numel() * 4;
  const double resident = double(peft::resident_bytes(*m) - adapters);
  auto r = run_ftune("model info --model " + shell_quote(tmp_.file("base")) + " --quant nf4");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const size_t at = r.output.find(" bytes, ");
  ASSERT_NE(at, std::string::npos) << r.output;
  const double formula = std::atof(r.output.c_str() + r.output.rfind('(', at) + 1);
  std::printf("[peft] qlora resident %.0f bytes, model info --quant nf4 %.0f\n", resident, formula);
  EXPECT_NEAR(resident, formula, 0.1 * formula);
}

// A checkpoint the oracle writes in bitsandbytes' 4-bit layout loads without a detour through
// float: every projection dequantises to the reference's weights bit for bit, its float weight
// is gone, and the model computes what quantising the float base at load computes.
TEST_F(PeftMethods, ABnb4bitCheckpointLoadsToTheReferenceWeights) {
  auto r = run_oracle("peft_oracle.py", "bnb " + shell_quote(tmp_.file("base")) + " " + shell_quote(tmp_.file("bnb")));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  ASSERT_TRUE(peft::is_bnb_4bit(tmp_.file("bnb")));
  EXPECT_FALSE(peft::is_bnb_4bit(tmp_.file("base")));
  auto m = peft::load_base(tmp_.file("bnb"), at::TensorOptions(at::kFloat));
  size_t compared = 0;
  for (auto& [name, linear] : m->named_linears()) {
    auto nf4 = std::dynamic_pointer_cast<peft::Nf4Base>(linear->adapter());
    ASSERT_TRUE(nf4) << name;
    EXPECT_EQ(linear->weight.numel(), 0) << name << ": no float copy";
    EXPECT_TRUE(at::equal(peft::dequantize_nf4(nf4->weight()), read_tensor(tmp_.file("bnb.safetensors"), name + ".weight")))
        << name;
    ++compared;
  }
  EXPECT_EQ(compared, m->named_linears().size());
  auto quantised_here = base();
  peft::AdapterSpec spec;
  spec.method = "qlora";
  peft::attach_adapters(*quantised_here, spec, 0);
  at::NoGradGuard no_grad;
  EXPECT_LT(max_abs_diff(m->forward(ids()), quantised_here->forward(ids())), 1e-6);
  spec.method = "lora";
  EXPECT_NE(error_of([&] { peft::attach_adapters(*m, spec, 0); }).find("use method.name = qlora"), std::string::npos);
}

// An 8B-shaped config: about half a byte per projection weight plus the absmax overhead.
TEST_F(PeftMethods, ModelInfoReportsNf4MemoryOfAn8BShape) {
  auto r = run_ftune("model init --model.preset llama-3.1-8b --model.config_only --out " + shell_quote(tmp_.file("8b")));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  r = run_ftune("model info --model " + shell_quote(tmp_.file("8b")) + " --quant nf4");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  std::printf("%s", r.output.substr(r.output.find("nf4 (")).c_str());
  const size_t at = r.output.find(" bytes/weight");
  ASSERT_NE(at, std::string::npos) << r.output;
  const double per_weight = std::atof(r.output.c_str() + r.output.rfind(' ', at - 1) + 1);
  EXPECT_NEAR(per_weight, 0.5 + 1.0 / 64 + 4.0 / (64 * 256), 1e-4);
  r = run_ftune("model info --model " + shell_quote(tmp_.file("8b")) + " --quant nf3");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("--quant 'nf3' is not known"), std::string::npos) << r.output;
}

// A PEFT directory of a type ftune does not load is named, with what it does load.
TEST_F(PeftMethods, AnUnknownPeftTypeIsNamed) {
  std::filesystem::create_directories(tmp_.file("ptune"));
  write_file(tmp_.file("ptune/adapter_config.json"), R"({"peft_type": "P_TUNING", "num_virtual_tokens": 4})");
  auto m = base();
  const std::string e = error_of([&] { peft::load_adapter(*m, tmp_.file("ptune")); });
  EXPECT_NE(e.find("peft_type 'P_TUNING' is not one ftune loads"), std::string::npos) << e;
}

}  // namespace
}  // namespace ftune::test
