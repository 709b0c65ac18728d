using System.CommandLine;
using Engine.Cli;
using Engine.Cli.Commands;

Engine.Kernels.CudaBackend.Register();
var root = new RootCommand("engine: a from-scratch transformer fine-tuning engine (tensors, autograd, CPU and CUDA backends)");
root.Add(GradCheckCommand.Create());
root.Add(OpsCommand.Create());
root.Add(DemoCommand.Create());
root.Add(TrainCommands.Train());
root.Add(TrainCommands.Eval());
root.Add(TrainCommands.Predict());
root.Add(BenchCommand.Create());
root.Add(InspectCommand.Create());
root.Add(ForwardCommand.Create());
root.Add(KernelsCommand.Create());
root.Add(TokenizeCommand.Create());
root.Add(AnalyzeCommand.Create());
return Cli.Run(root, args);
