using Engine.Autograd;
using Engine.IO;
using Engine.Models;
using Engine.Models.Peft;
using NUnit.Framework;

namespace Engine.Tests.Peft;

/// <summary>
/// A LoRA adapter made by Hugging Face PEFT itself (Fixtures/peft_lora, written by
/// tools/reference/peft_reference.py on a machine with transformers and peft) loads onto the
/// tiny BERT fixture and gives PEFT's logits. The test also writes the engine's own adapter of
/// the same model and its logits to $TMPDIR/engine-peft-adapter, which
/// `peft_reference.py --check` loads into PEFT for the other direction.
/// </summary>
public class PeftInteropTests
{
    private static string Fixtures => Path.Combine(TestContext.CurrentContext.TestDirectory, "Fixtures");

    [Test]
    public void APeftMadeAdapterGivesPeftsLogits()
    {
        var adapter = Path.Combine(Fixtures, "peft_lora");
        if (!File.Exists(Path.Combine(adapter, AdapterFiles.ConfigFile)))
            Assert.Ignore("Fixtures/peft_lora is absent: run tools/reference/peft_reference.py where transformers and peft are installed");
        var folder = HfModelFolder.Open(Path.Combine(Fixtures, "bert_tiny", "bert"));
        var model = SequenceClassifier.FromFolder(folder, dtype: DType.F64, numLabels: AdapterFiles.HeadLabelCount(adapter));
        AdapterFiles.Load(model, adapter);
        model.Eval();
        using var reference = SafeTensors.Open(Path.Combine(adapter, "reference.safetensors"));
        var ids = reference.ReadAs("input_ids", DType.I32);
        var mask = reference.ReadAs("attention_mask", DType.I32);
        var types = reference.ReadAs("token_type_ids", DType.I32);
        using (Tape.NoGrad())
        {
            var logits = model.Forward(ids, mask, types).Logits.ToDoubleArray();
            // float32 weights computed in float64 on both sides: rounding only.
            Assert.That(logits, Is.EqualTo(reference.ReadAs("logits", DType.F64).ToDoubleArray()).Within(1e-8));
        }

        // The other direction: the engine's save of the same adapter, for peft_reference.py --check.
        var mine = Path.Combine(Path.GetTempPath(), "engine-peft-adapter");
        Directory.CreateDirectory(mine);
        AdapterFiles.Save(mine, model, model.Peft!.Method.AdapterConfig(Path.GetFullPath(folder.Path))!);
        using (Tape.NoGrad())
            SafeTensors.Save(Path.Combine(mine, "engine_logits.safetensors"), new Dictionary<string, Tensor>
            {
                ["input_ids"] = ids, ["attention_mask"] = mask, ["token_type_ids"] = types, ["logits"] = model.Forward(ids, mask, types).Logits,
            });
        TestContext.Out.WriteLine($"wrote {mine}; check it with: python3 tools/reference/peft_reference.py --check {mine}");
    }
}
