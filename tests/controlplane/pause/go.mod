module fluid-vineyard/image/pause

go 1.21
