"""The bench: our models' training speed and memory against snnTorch's tutorials and peers.

Throughput and memory of this project's models against tutorial-style snnTorch loops and
other SNN libraries, on this machine.

    python -m bench [--data-root ../shared/data] [--cases rate25,csnn_direct8] [--quick]
                    [--device cuda]

A folder beside the package, not part of it (nanoGPT-style): it compares the project with
libraries that are not its dependencies (the bench extra), so it runs from the project root
and reuses the pipeline's pieces by importing snn_sweep; the installed package leaves it out.

Every case trains and evaluates the same network (784-1000-10 MLP, or tutorial 6's
12C5-MP2-64C5-MP2-10 conv SNN; LIF with beta 0.95, threshold 1, subtract reset) with Adam at
the config's learning rate, batch 128, in up to six ways:

- ours: built and trained through the trainer's code path (config composition, build.py's
  model, encoder, optimizer and scheduler, Runner.train_step, Runner.evaluate), fed the
  in-memory MNIST tensors;
- ref: what snnTorch tutorials 5 and 6 teach, what users write: a DataLoader over torchvision
  MNIST with a per-sample transform, spikegen per batch, a Python loop over timesteps calling
  layer -> snn.Leaky, the CE loss on the membrane summed over steps;
- tensor: the same tutorial loop fed the same tensors as ours (no DataLoader), so that
  ours / tensor measures the SNN machinery alone;
- spikingjelly, norse (when importable, `pip install -e ".[bench]"`): the same networks in each
  library's own idiom, fed the same spike trains as `tensor`;
- byo (spiking cases): the same network written by a user from snn_sweep.nn's layers, trained
  by the same calls as ours.

The event case (nmnist_csnn10) feeds the conv SNN synthetic N-MNIST-shaped frames (uint8 counts
[B, T, 2, 34, 34], a few % of pixels with events) instead of MNIST: ours and tensor only.

Timings alternate between the sides in rounds within one process, so that load on the machine
hits all of them; each round is timed separately and a ratio is the median of the per-round
ratios. The bench also measures this machine's fp32 matmul peak and reports the fraction of it
our training reaches (dense FLOPs). Peak memory is the peak RSS of a fresh subprocess per side
(it is process-wide).

`--device cuda` runs every side on the GPU (the data moved there once, ours as loop.fit runs
it, Norse's loop compiled by torch.compile where that works, SpikingJelly with the CUDA
implementation it selects; the header says which ran), leaves out the CPU-only parts (the
memory check, the matmul peak, the threads) and checks targets.yaml's cuda section instead.

The package: cases.py (the cases, and the targets from targets.yaml), tutorial.py (the
tutorials' networks and the ref side), sides.py (the tensor, ours and byo sides), peers.py
(SpikingJelly, Norse), measure.py (timing, the peak, FLOPs, memory, accuracy), report.py (tables
and verdicts), cli.py (the command line).
"""
