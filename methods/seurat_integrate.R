#!/usr/bin/env Rscript
# Seurat v4 anchor integration (CCA or RPCA) of log-normalized data; called by methods/seurat.py.
#
# Usage: Rscript seurat_integrate.R IN_DIR OUT_FILE key=value ...
#   IN_DIR holds X.mtx (genes x cells, Matrix Market, log-normalized), genes.tsv (one name per
#   line) and cells.tsv (header "cell<TAB>batch"). OUT_FILE gets a TSV: cell name, then the
#   PCA (n_pcs columns) of the integrated assay, in the order of cells.tsv; OUT_FILE.info gets
#   key<TAB>value lines (k_weight_used, n_anchors, min_anchor_cells).
# Keys: reduction (cca|rpca), k_anchor, k_filter, k_score, k_weight, dims, n_pcs, seed.
# Exit code 3: Seurat is not installed (the caller turns this into a clear error).

args <- commandArgs(trailingOnly = TRUE)
if (length(args) < 2) stop("usage: seurat_integrate.R IN_DIR OUT_FILE key=value ...")
in_dir <- args[1]
out_file <- args[2]
opts <- list(reduction = "cca", k_anchor = "5", k_filter = "200", k_score = "30", k_weight = "100",
             dims = "30", n_pcs = "50", seed = "0")
for (kv in args[-(1:2)]) {
  parts <- strsplit(kv, "=", fixed = TRUE)[[1]]
  if (length(parts) != 2 || !(parts[1] %in% names(opts))) stop(paste("bad option:", kv))
  opts[[parts[1]]] <- parts[2]
}
int_opt <- function(name) as.integer(opts[[name]])

if (!requireNamespace("Seurat", quietly = TRUE)) {
  message("Seurat is not installed in this R (", R.home(), ")")
  quit(status = 3)
}
# Seurat's anchor steps go through future.apply even when sequential; the future package
# refuses to hand over more than 500 MiB of globals (the object list is ~4.8 GiB at 100k cells x
# 2000 genes), so lift the cap: nothing is shipped to other processes in sequential mode.
options(future.globals.maxSize = Inf)
suppressPackageStartupMessages({
  library(Seurat)
  library(Matrix)
})
set.seed(int_opt("seed"))

x <- as(readMM(file.path(in_dir, "X.mtx")), "CsparseMatrix")
genes <- readLines(file.path(in_dir, "genes.tsv"))
cells <- read.delim(file.path(in_dir, "cells.tsv"), header = TRUE, colClasses = "character")
rownames(x) <- genes
colnames(x) <- cells$cell
meta <- data.frame(batch = cells$batch, row.names = cells$cell)

# The data are already log-normalized HVGs: they go into the "data" slot (used by anchoring
# and integration); "counts" holds the same values only because Seurat requires the slot.
obj <- suppressWarnings(CreateSeuratObject(counts = x, meta.data = meta, min.cells = 0, min.features = 0))
obj <- SetAssayData(obj, slot = "data", new.data = GetAssayData(obj, slot = "counts"))
features <- rownames(obj)  # every HVG is an anchor feature (names as Seurat sanitized them)
objs <- SplitObject(obj, split.by = "batch")
dims <- seq_len(int_opt("dims"))

if (opts$reduction == "rpca") {
  # RPCA projects each batch into the others' PCA: per-batch scaling and PCA first (Seurat vignette).
  objs <- lapply(objs, function(o) {
    o <- ScaleData(o, features = features, verbose = FALSE)
    RunPCA(o, features = features, npcs = max(int_opt("dims"), 30), verbose = FALSE, seed.use = int_opt("seed"))
  })
}
anchors <- FindIntegrationAnchors(object.list = objs, anchor.features = features,
                                  reduction = opts$reduction, k.anchor = int_opt("k_anchor"),
                                  k.filter = int_opt("k_filter"), k.score = int_opt("k_score"),
                                  dims = dims, verbose = FALSE)
# IntegrateData weights each cell by its k.weight nearest anchor cells, so k.weight must stay
# below the number of distinct anchor cells of every dataset (small batches have few).
a <- anchors@anchors
n_anchor_cells <- sapply(seq_along(objs), function(d) {
  length(unique(c(a$cell1[a$dataset1 == d], a$cell2[a$dataset2 == d])))
})
k_weight <- max(1L, min(int_opt("k_weight"), min(n_anchor_cells) - 1L))
integrated <- IntegrateData(anchorset = anchors, k.weight = k_weight, dims = dims, verbose = FALSE)
DefaultAssay(integrated) <- "integrated"
integrated <- ScaleData(integrated, verbose = FALSE)
integrated <- RunPCA(integrated, npcs = int_opt("n_pcs"), verbose = FALSE, seed.use = int_opt("seed"))
emb <- Embeddings(integrated, "pca")[cells$cell, , drop = FALSE]

writeLines(c(paste0("k_weight_used\t", k_weight), paste0("n_anchors\t", nrow(a)),
             paste0("min_anchor_cells\t", min(n_anchor_cells))), paste0(out_file, ".info"))
tmp <- paste0(out_file, ".tmp")
write.table(data.frame(cell = rownames(emb), emb, check.names = FALSE), tmp, sep = "\t", quote = FALSE,
            row.names = FALSE)
file.rename(tmp, out_file)
