int main() { return 0; }  // placeholder while the engine is being assembled
