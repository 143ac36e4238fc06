// Placeholder entry point; replaced by the daemon/front-end implementation.
return 1;
